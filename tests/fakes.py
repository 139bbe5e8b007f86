"""In-memory fakes for the two seams, sharing one world so they stay consistent.

``FakeForge`` implements :class:`providers.base.Provider`; ``FakeRuntime`` implements
:class:`orchestrator.runtime.ContainerRuntime`. A ``FakeWorld`` holds the jobs, forge
runners and containers, so "a runner took a job" or "a container exited" is one call
that both sides see. For tests only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from orchestrator.runtime import (
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStartError,
    EventCallback,
    GpuRequest,
    HostStatus,
    HostUnavailable,
    Listing,
)
from providers.base import (
    ForgeKind,
    ForgeRunner,
    PendingJob,
    ProviderHealth,
    Registration,
    RunnerActivity,
    RunnerRef,
    RunnerRequest,
    WebhookResult,
    runner_name_prefix,
)
from providers.errors import ProviderError, RunnerBusy, RunnerNotFound, WebhookRejected


@dataclasses.dataclass
class FakeJob:
    id: str
    forge: str
    tags: tuple[str, ...]
    created_at: datetime
    status: str = "pending"  # pending | running | success
    runner: str = ""


@dataclasses.dataclass
class FakeForgeRunner:
    id: str
    name: str
    forge: str
    labels: tuple[str, ...]
    credential: str
    busy: bool = False
    job: str = ""
    last_job_ended_at: datetime | None = None


@dataclasses.dataclass
class FakeContainer:
    id: str
    spec: ContainerSpec
    host: str
    status: str = "created"
    exit_code: int | None = None


class FakeWorld:
    """Shared truth for a FakeForge per forge and one FakeRuntime."""

    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.runners: dict[str, FakeForgeRunner] = {}
        self.containers: dict[str, FakeContainer] = {}
        self._ids = itertools.count(1)
        self.events: list[str] = []  # ordered log of external actions, for assertions

    def next_id(self) -> str:
        return str(next(self._ids))

    def add_job(self, forge: str, tags: Sequence[str], created_at: datetime | None = None) -> str:
        job_id = self.next_id()
        self.jobs[job_id] = FakeJob(job_id, forge, tuple(tags), created_at or datetime.now(UTC))
        return job_id

    def take_job(self, runner_id: str, job_id: str) -> None:
        """The runner picks the job up (what a real agent would do)."""
        runner = self.runners[runner_id]
        job = self.jobs[job_id]
        job.status, job.runner = "running", runner_id
        runner.busy, runner.job = True, job_id

    def finish_job(self, job_id: str, now: datetime | None = None) -> None:
        job = self.jobs[job_id]
        job.status = "success"
        runner = self.runners.get(job.runner)
        if runner is not None:
            runner.busy, runner.job = False, ""
            runner.last_job_ended_at = now or datetime.now(UTC)

    def container_of(self, forge_runner_id: str) -> FakeContainer | None:
        for c in self.containers.values():
            if c.spec.forge_runner_id == forge_runner_id and c.status != "removed":
                return c
        return None

    def live_containers(self) -> list[FakeContainer]:
        return [c for c in self.containers.values() if c.status != "removed"]


class FakeForge:
    """A :class:`providers.base.Provider` over a :class:`FakeWorld`."""

    def __init__(
        self,
        world: FakeWorld,
        name: str = "gitlab",
        kind: ForgeKind | str = ForgeKind.GITLAB,
        instance_id: str = "test",
        webhook_secret: str = "hook-secret",
    ) -> None:
        self.world = world
        self.name = name
        self.kind = ForgeKind(kind)
        self.instance_id = instance_id
        self.webhook_secret = webhook_secret
        self.fail: ProviderError | None = None  # raised by every call while set
        self.refuse_busy_delete = True
        self.calls: list[str] = []
        self.closed = False

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail

    async def pending_jobs(self) -> Sequence[PendingJob]:
        self._check("pending_jobs")
        return [
            PendingJob(id=j.id, scope="group/project", tags=j.tags, created_at=j.created_at)
            for j in self.world.jobs.values()
            if j.forge == self.name and j.status == "pending"
        ]

    async def register_runner(self, request: RunnerRequest) -> Registration:
        self._check("register_runner")
        runner_id = self.world.next_id()
        credential = f"glrt-fakecredential{runner_id:0>8}"
        self.world.runners[runner_id] = FakeForgeRunner(
            runner_id, request.name, self.name, request.labels, credential
        )
        self.world.events.append(f"register {runner_id}")
        return Registration(
            forge_runner_id=runner_id,
            name=request.name,
            command=("gitlab-runner", "run-single", "--max-builds", "1"),
            credential=credential,
            credential_env="CI_SERVER_TOKEN",
        )

    def _find(self, ref: RunnerRef) -> FakeForgeRunner | None:
        if ref.forge_id is not None:
            return self.world.runners.get(ref.forge_id)
        return next((r for r in self.world.runners.values() if r.name == ref.name), None)

    async def unregister_runner(self, runner_ref: RunnerRef | str, *, force: bool = False) -> None:
        self._check("unregister_runner")
        ref = RunnerRef.of(runner_ref)
        runner = self._find(ref)
        if runner is None:
            raise RunnerNotFound(str(ref))
        forge_runner_id = runner.id
        # GitHub refuses a busy runner even when forced; GitLab (our provider) only without.
        github = self.kind is ForgeKind.GITHUB
        if runner.busy and (github or (self.refuse_busy_delete and not force)):
            raise RunnerBusy(forge_runner_id)
        del self.world.runners[forge_runner_id]
        self.world.events.append(f"unregister {forge_runner_id}")

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        self._check("runner_activity")
        out = []
        for value in runners:
            ref = RunnerRef.of(value)
            runner = self._find(ref)
            if runner is None:
                out.append(RunnerActivity(str(ref), busy=False, exists=False))
            else:
                out.append(
                    RunnerActivity(
                        runner.id,
                        busy=runner.busy,
                        current_job=runner.job,
                        last_job_ended_at=runner.last_job_ended_at,
                    )
                )
        return out

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        self._check("list_own_runners")
        prefix = runner_name_prefix(self.instance_id)
        return [
            ForgeRunner(r.id, r.name, online=True, busy=r.busy, labels=r.labels)
            for r in self.world.runners.values()
            if r.forge == self.name and r.name.startswith(prefix)
        ]

    async def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        lower = {k.lower(): v for k, v in headers.items()}
        expected = (
            "sha256=" + hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(lower.get("x-hub-signature-256", ""), expected):
            raise WebhookRejected(401, "bad signature")
        try:
            data = json.loads(body)
            job_id = str(data["job"]["id"])
            tags = tuple(str(t) for t in data["job"]["tags"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected(400, f"malformed payload: {exc}") from exc
        return WebhookResult(
            event="job.queued",
            nudge=True,
            jobs=(PendingJob(job_id, "group/project", tags, datetime.now(UTC)),),
        )

    def health(self) -> ProviderHealth:
        return ProviderHealth(requests_total=len(self.calls))

    async def aclose(self) -> None:
        self.closed = True


class FakeRuntime:
    """A :class:`orchestrator.runtime.ContainerRuntime` over a :class:`FakeWorld`."""

    def __init__(
        self, world: FakeWorld, instance_id: str = "test", hosts: Sequence[str] = ("local",)
    ) -> None:
        self.world = world
        self.instance_id = instance_id
        self.host_names = tuple(hosts)
        self.down: set[str] = set()
        self.fail_start: str = ""  # error message for start_container while set
        #: pool -> exit code: that pool's containers start, then exit at once (a broken
        #: runner command, a runner that cannot reach its forge).
        self.exit_at_start: dict[str, int] = {}
        self.on_event: EventCallback | None = None
        self.released = 0
        self.closed = False

    async def start(self, on_event: EventCallback) -> None:
        self.on_event = on_event

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.instance_id and spec.instance_id != self.instance_id:
            raise ContainerStartError(
                f"spec is for instance {spec.instance_id!r}, this runtime is {self.instance_id!r}"
            )
        host = next((h for h in self.host_names if h not in self.down), None)
        if host is None:
            raise HostUnavailable("local", "all hosts down")
        cid = f"c{self.world.next_id():0>11}"
        self.world.containers[cid] = FakeContainer(cid, spec, host)
        self.world.events.append(f"create {cid}")
        return self._info(self.world.containers[cid])

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        if self.fail_start:
            raise ContainerStartError(self.fail_start, host=info.host, container_id=info.id)
        container = self.world.containers[info.id]
        container.status = "running"
        self.world.events.append(f"start {info.id}")
        code = self.exit_at_start.get(container.spec.pool)
        if code is not None:
            container.status, container.exit_code = "exited", code
        return self._info(container)

    def exit(self, container_id: str, code: int = 0) -> None:
        """The container's process ended (e.g. an ephemeral runner finished its job)."""
        container = self.world.containers[container_id]
        container.status, container.exit_code = "exited", code
        if self.on_event is not None:
            self.on_event(
                ContainerEvent(container.host, container_id, "die", container.spec.runner_id, code)
            )

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        if host in self.down:
            raise HostUnavailable(host, "down")
        container = self.world.containers.get(container_id)
        if container is not None and container.status == "running":
            container.status, container.exit_code = "exited", 143
            self.world.events.append(f"stop {container_id}")

    async def remove(self, host: str, container_id: str) -> None:
        if host in self.down:
            raise HostUnavailable(host, "down")
        container = self.world.containers.get(container_id)
        if container is not None and container.status != "removed":
            container.status = "removed"
            self.world.events.append(f"remove {container_id}")

    async def list(self) -> Listing:
        return Listing(
            tuple(
                self._info(c)
                for c in self.world.live_containers()
                if c.host not in self.down and c.spec.instance_id == self.instance_id
            ),
            unreachable=frozenset(self.down),
        )

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        container = self.world.containers.get(container_id)
        if container is not None and container.spec.pool in self.exit_at_start:
            return f"log of {container_id}\nERROR: could not reach the forge\n"
        return f"log of {container_id}\njob done\n"

    def hosts(self) -> Sequence[HostStatus]:
        return [
            HostStatus(
                h,
                f"fake://{h}",
                h not in self.down,
                "amd64",
                0,
                100,
                sum(1 for c in self.world.live_containers() if c.host == h),
            )
            for h in self.host_names
        ]

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        if all(h in self.down for h in self.host_names):
            return "every docker host is down"
        return ""

    async def release_unused(self) -> None:
        self.released += 1

    async def aclose(self) -> None:
        self.closed = True

    @staticmethod
    def _info(c: FakeContainer) -> ContainerInfo:
        return ContainerInfo(
            id=c.id,
            name=c.spec.name,
            host=c.host,
            status=c.status,
            runner_id=c.spec.runner_id,
            pool=c.spec.pool,
            forge=c.spec.forge,
            forge_runner_id=c.spec.forge_runner_id,
            exit_code=c.exit_code,
        )
