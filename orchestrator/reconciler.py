"""The reconciler: observe -> plan -> apply, one at a time, idempotent, level-triggered.

One :meth:`Reconciler.run_once`:

1. **observe** supply first (the runtime's containers, the busy/idle state of runners
   whose view is stale), then demand: every forge's pending jobs (concurrently; a forge
   that fails is *paused*: its jobs wait with ``forge_paused`` and nothing is created or
   retired for it, while the other forges carry on). Supply first, so that a job taken
   between the two looks is never counted twice;
2. **settle** what the containers say: a container that exited or vanished makes its
   runner drain (unregister on the forge, remove the container); a labelled container
   with no runner row is an orphan and is removed;
3. **plan** with the pure :func:`orchestrator.planner.compute_plan`;
4. **apply**: retire first (freeing capacity), then create runners concurrently
   (bounded). Every step is journalled before it is done (see :mod:`orchestrator.state`).

Webhooks and container events only *nudge* an earlier run; polling alone is correct.
A retirement re-checks that the runner is not busy right before unregistering it, and
unregisters before stopping the container, so the forge stops sending it jobs first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.config import PoolConfig, Settings
from orchestrator.labels import pool_labels
from orchestrator.logging import forget_secret, register_secret
from orchestrator.metrics import Metrics
from orchestrator.models import (
    STARTING_STATES,
    CreateRequest,
    ForgeKind,
    Job,
    Plan,
    PoolSpec,
    RetireRequest,
    Runner,
    RunnerState,
)
from orchestrator.planner import compute_plan
from orchestrator.runtime import (
    ContainerEvent,
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    GpuRequest,
    Listing,
    RuntimeFailure,
)
from orchestrator.snapshot import ForgeStatus, PoolStatus, Snapshot
from orchestrator.state import Journal, UnknownRunner
from providers.base import (
    PendingJob,
    Provider,
    RunnerActivity,
    RunnerRequest,
    WebhookResult,
    runner_name_prefix,
)
from providers.errors import (
    ProviderAuthError,
    ProviderError,
    RateLimited,
    RunnerBusy,
    RunnerNotFound,
)

log = structlog.get_logger("orchestrator.reconciler")

DEFAULT_IMAGES = {
    ForgeKind.GITLAB: "runner-orchestrator/gitlab-runner:latest",
    ForgeKind.GITHUB: "runner-orchestrator/github-runner:latest",
}
_LOG_TAIL_LINES = 50
_SPAWN_BACKOFF_MAX_S = 300.0
#: Removed runners stay in the journal (for /runners and their logs) this long.
_KEEP_REMOVED = timedelta(days=7)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class _Forge:
    """What the reconciler remembers about one forge between runs."""

    name: str
    kind: ForgeKind
    provider: Provider
    jobs: list[Job] = dataclasses.field(default_factory=list)
    paused: str = ""
    last_ok_at: datetime | None = None
    retry_at: datetime | None = None
    failures: int = 0
    polled_at: datetime | None = None
    hints: dict[str, tuple[Job, datetime]] = dataclasses.field(default_factory=dict)
    finished: dict[str, datetime] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _PoolBackoff:
    until: datetime
    failures: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Summary:
    """The outcome of one reconcile (also the canonical log line)."""

    pending: int
    created: int
    retired: int
    failed: int
    waiting: int
    duration_s: float
    result: str
    error: str = ""


def _to_job(forge: str, job: PendingJob) -> Job:
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return Job(
        forge=forge,
        id=job.id,
        scope=job.scope,
        tags=frozenset(job.tags),
        created_at=created,
        pipeline=job.pipeline,
        name=job.name,
    )


class Reconciler:
    """Owns the journal's runners and drives them towards the plan. See module doc."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        providers: Mapping[str, Provider],
        runtime: ContainerRuntime,
        metrics: Metrics,
        instance_id: str,
        clock: Callable[[], datetime] = utcnow,
        spawn_concurrency: int = 8,
        nudge: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.runtime = runtime
        self.metrics = metrics
        self.instance_id = instance_id
        self.clock = clock
        self.nudge: Callable[[], None] = nudge or (lambda: None)
        self.pool_specs: list[PoolSpec] = settings.pool_specs()
        self._pools_cfg: dict[str, PoolConfig] = {p.name: p for p in settings.pools}
        self._forges: dict[str, _Forge] = {
            name: _Forge(name=name, kind=ForgeKind(p.kind), provider=p)
            for name, p in providers.items()
        }
        self._spawn_sem = asyncio.Semaphore(spawn_concurrency)
        self._lock = asyncio.Lock()
        self._activity_at: dict[str, datetime] = {}
        self._job_created: dict[str, datetime] = {}
        self._backoff: dict[str, _PoolBackoff] = {}
        self._scale_up: dict[str, int] = {}
        self._scale_down: dict[str, int] = {}
        self._name_ids: dict[str, str] = {}
        # Minted credentials, only so the log redactor can forget them once the runner is
        # gone; never persisted, never shown.
        self._credentials: dict[str, str] = {}
        self.snapshot = Snapshot(instance_id=instance_id)
        self._last_plan = Plan()

    # --- public API -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a reconcile (or another mutating operation) is running."""
        return self._lock.locked()

    def request_scale(self, pool: str, delta: int) -> None:
        """Operator scale-up (delta > 0) or scale-down (delta < 0), applied next run."""
        if pool not in self._pools_cfg:
            raise KeyError(pool)
        if delta > 0:
            self._scale_up[pool] = self._scale_up.get(pool, 0) + delta
        elif delta < 0:
            self._scale_down[pool] = self._scale_down.get(pool, 0) - delta

    def on_container_event(self, event: ContainerEvent) -> None:
        """Runtime callback: a container of ours started/died; react at once."""
        if event.action in {"die", "oom", "destroy"}:
            log.info(
                "container.exited",
                runner=event.runner_id,
                exit_code=event.exit_code,
                host=event.host,
            )
            self.nudge()

    def on_webhook(self, forge: str, result: WebhookResult) -> None:
        """Remember what a webhook told us (a hint until the next poll) and nudge."""
        state = self._forges.get(forge)
        if state is None:
            return
        now = self.clock()
        for pending in result.jobs:
            job = _to_job(forge, pending)
            state.hints[job.key] = (job, now)
        for job_id in result.finished_job_ids:
            state.finished[f"{forge}:{job_id}"] = now
            state.hints.pop(f"{forge}:{job_id}", None)
        if result.nudge:
            self.nudge()

    async def run_once(self) -> Summary:
        """One full reconcile. Never raises for forge or runtime trouble."""
        async with self._lock:
            return await self._run_once()

    async def plan_only(self) -> tuple[list[Job], Plan]:
        """Observe the forges and plan, changing nothing (``runner-orchestrator plan``)."""
        await asyncio.gather(*(self._poll(f, force=True) for f in self._forges.values()))
        jobs = self._demand()
        plan = self._plan(jobs, self.journal.active(), consume_manual=False)
        return jobs, plan

    def forge_report(self) -> list[dict[str, object]]:
        """Each forge's last poll: name, kind, pending job count and pause reason."""
        return [
            {"name": f.name, "kind": f.kind.value, "pending": len(f.jobs), "error": f.paused}
            for f in self._forges.values()
        ]

    async def retire_now(self, runner_id: str) -> Runner:
        """Operator DELETE: retire one runner now, unless it is busy (then keep it)."""
        async with self._lock:
            runner = self.journal.get(runner_id)
            if runner.state is RunnerState.REMOVED:
                return runner
            await self._retire(runner, "manual")
            self._refresh_snapshot()
            return self.journal.get(runner_id)

    async def logs(self, runner_id: str, tail: int = 200) -> str:
        """Container output of a runner: live while it exists, else the journalled tail."""
        runner = self.journal.get(runner_id)
        if runner.container_id and runner.state is not RunnerState.REMOVED:
            try:
                return await self.runtime.logs(runner.host, runner.container_id, tail)
            except RuntimeFailure:
                pass
        return runner.logs_tail

    # --- recovery, garbage collection and drain ------------------------------------------------

    async def recover(self) -> None:
        """On start: finish or roll back what a previous run left half done.

        Rows stuck before their container started are failed (and then cleaned up by the
        normal retire path); rows whose container runs are adopted; labelled containers
        with no row are removed by the next reconcile's settle step.
        """
        async with self._lock:
            now = self.clock()
            try:
                listing = await self.runtime.list()
            except RuntimeFailure as exc:
                log.warning("recover.runtime_unavailable", error=str(exc))
                listing = None
            by_id = {c.runner_id: c for c in listing.containers} if listing else {}
            adopted = failed = 0
            for runner in self.journal.active():
                if runner.state not in STARTING_STATES:
                    continue
                container = by_id.get(runner.id)
                if container is not None and container.running:
                    self.journal.transition(
                        runner.id,
                        RunnerState.IDLE,
                        now=now,
                        reason="adopted",
                        container_id=container.id,
                        host=container.host,
                    )
                    adopted += 1
                else:
                    self.journal.transition(
                        runner.id,
                        RunnerState.FAILED,
                        now=now,
                        reason="interrupted",
                        error="daemon stopped while this runner was starting",
                    )
                    failed += 1
            running = sum(
                1 for r in self.journal.active() if r.state in {RunnerState.IDLE, RunnerState.BUSY}
            )
            log.info(
                "recover.done", adopted_starting=adopted, failed_starting=failed, running=running
            )

    async def gc_forges(self) -> int:
        """Delete forge registrations this instance created that no runner row accounts for.

        Never touches a runner without this instance's name prefix (the provider filters
        on it) nor one that is busy.
        """
        async with self._lock:
            removed = 0
            names = {r.name for r in self.journal.active()}
            for forge in self._forges.values():
                if forge.paused:
                    continue
                try:
                    own = await forge.provider.list_own_runners()
                except ProviderError as exc:
                    log.warning("gc.list_failed", forge=forge.name, error=str(exc))
                    continue
                prefix = runner_name_prefix(self.instance_id)
                for fr in own:
                    if fr.name in names or not fr.name.startswith(prefix) or fr.busy:
                        continue
                    try:
                        await forge.provider.unregister_runner(fr.id)
                    except (RunnerNotFound, RunnerBusy):
                        continue
                    except ProviderError as exc:
                        log.warning(
                            "gc.unregister_failed", forge=forge.name, runner=fr.name, error=str(exc)
                        )
                        continue
                    removed += 1
                    self.metrics.orphans.labels("forge_runner").inc()
                    log.info("gc.forge_runner_removed", forge=forge.name, runner=fr.name)
            pruned = self.journal.prune(self.clock() - _KEEP_REMOVED)
            if pruned:
                log.info("gc.journal_pruned", rows=pruned)
            return removed

    async def drain(self, timeout_s: float) -> None:
        """Shutdown in drain mode: retire every runner; busy ones get until the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self._lock:
                active = self.journal.active()
                if not active:
                    break
                force = time.monotonic() >= deadline
                for runner in active:
                    await self._retire(runner, "drain", force=force)
            if force or not self.journal.active():
                break
            await asyncio.sleep(1.0)
        self._refresh_snapshot()

    # --- the reconcile -------------------------------------------------------------------------

    async def _run_once(self) -> Summary:
        started = time.monotonic()
        now = self.clock()
        error = ""
        created = retired = failed = 0
        with structlog.contextvars.bound_contextvars(reconcile=secrets.token_hex(3)):
            try:
                # Supply before demand: a job a runner takes after we looked at the runner
                # leaves that runner counted as free for it (never a duplicate spawn),
                # whereas demand read first would count the job twice: still pending and
                # keeping its new runner busy.
                listing = await self._list_containers()
                await self._settle(listing)
                await self._refresh_activity()
                await asyncio.gather(*(self._poll(f) for f in self._forges.values()))
                jobs = self._demand()
                plan = self._plan(jobs, self.journal.active(), consume_manual=True)
                self._last_plan = plan
                for request in plan.retire:
                    if await self._retire_request(request):
                        retired += 1
                results = await asyncio.gather(
                    *(self._create(req, n) for req in plan.create for n in range(req.count))
                )
                created = sum(1 for ok in results if ok)
                failed = sum(1 for ok in results if not ok)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("reconcile.crashed")
            duration = time.monotonic() - started
            paused = [f.name for f in self._forges.values() if f.paused]
            result = "error" if error else ("degraded" if paused else "ok")
            self.metrics.reconciles.labels("ok" if not error else "error").inc()
            self.metrics.reconcile_duration.observe(duration)
            self._refresh_snapshot(started_at=now, duration=duration, result=result, error=error)
            snap = self.snapshot
            summary = Summary(
                pending=sum(p.pending_jobs for p in snap.pools) + snap.unmatched_jobs,
                created=created,
                retired=retired,
                failed=failed,
                waiting=len(snap.waiting),
                duration_s=duration,
                result=result,
                error=error,
            )
            log.info(
                "reconcile.done",
                result=result,
                pending=summary.pending,
                runners=sum(p.active for p in snap.pools),
                created=created,
                retired=retired,
                failed=failed,
                blocked=sum(
                    v for k, v in snap.waiting_by_reason().items() if k != "runner_starting"
                ),
                paused_forges=paused,
                duration_ms=round(duration * 1000, 1),
                error=error or None,
            )
            return summary

    async def _poll(self, forge: _Forge, *, force: bool = False) -> None:
        now = self.clock()
        if not force and forge.retry_at is not None and now < forge.retry_at:
            return
        started = now
        try:
            pending = await forge.provider.pending_jobs()
        except ProviderAuthError as exc:
            self._pause(forge, f"authentication failed: {exc}", max(60.0, self._interval()))
            self.metrics.forge_errors.labels(forge.name, "auth").inc()
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else self._interval()
            self._pause(forge, f"rate limited; retrying in {wait:.0f}s", wait)
            self.metrics.forge_errors.labels(forge.name, "rate_limited").inc()
        except ProviderError as exc:
            forge.failures += 1
            # Back off, but never past one poll interval: recovery is due within one.
            wait = min(self._interval(), 2.0 ** min(forge.failures, 8))
            if getattr(exc, "retry_after", None):
                wait = max(wait, float(exc.retry_after))  # type: ignore[attr-defined]
            self._pause(forge, f"{type(exc).__name__}: {exc}", wait)
            self.metrics.forge_errors.labels(forge.name, "error").inc()
        except Exception as exc:
            forge.failures += 1
            self._pause(forge, f"provider bug: {type(exc).__name__}: {exc}", self._interval())
            self.metrics.forge_errors.labels(forge.name, "bug").inc()
            log.exception("forge.poll_crashed", forge=forge.name)
        else:
            if forge.paused:
                log.info("forge.resumed", forge=forge.name)
            forge.jobs = [_to_job(forge.name, p) for p in pending]
            forge.paused = ""
            forge.failures = 0
            forge.retry_at = None
            forge.last_ok_at = self.clock()
            forge.polled_at = started
            # Hints older than this poll are superseded by it.
            forge.hints = {k: v for k, v in forge.hints.items() if v[1] > started}
            forge.finished = {k: v for k, v in forge.finished.items() if v > started}

    def _pause(self, forge: _Forge, reason: str, wait_s: float) -> None:
        if forge.paused != reason:
            log.warning("forge.paused", forge=forge.name, reason=reason, retry_in_s=wait_s)
        forge.paused = reason
        forge.retry_at = self.clock() + timedelta(seconds=wait_s)

    def _interval(self) -> float:
        return self.settings.poll_interval

    def _demand(self) -> list[Job]:
        jobs: dict[str, Job] = {}
        for forge in self._forges.values():
            for job in forge.jobs:
                if job.key not in forge.finished:
                    jobs[job.key] = job
            for key, (job, _at) in forge.hints.items():
                jobs.setdefault(key, job)
        for job in jobs.values():
            self._job_created[job.key] = job.created_at
        return list(jobs.values())

    def _unavailable_pools(self) -> dict[str, str]:
        now = self.clock()
        out: dict[str, str] = {}
        for spec in self.pool_specs:
            backoff = self._backoff.get(spec.name)
            if backoff is not None and now < backoff.until:
                out[spec.name] = f"spawn failing, retry after {backoff.until:%H:%M:%S}: " + (
                    backoff.reason
                )
                continue
            cfg = self._pools_cfg[spec.name]
            platform = spec.platform if spec.platform != "auto" else "linux/amd64"
            reason = self.runtime.placeable(platform, _gpus(cfg), tuple(cfg.hosts))
            if reason:
                out[spec.name] = reason
        return out

    def _plan(
        self, jobs: Sequence[Job], runners: Sequence[Runner], *, consume_manual: bool
    ) -> Plan:
        plan = compute_plan(
            jobs=jobs,
            runners=runners,
            pools=self.pool_specs,
            now=self.clock(),
            global_max=self.settings.max_runners,
            paused_forges={f.name: f.paused for f in self._forges.values() if f.paused},
            unavailable_pools=self._unavailable_pools(),
            scale_up=dict(self._scale_up),
            scale_down=dict(self._scale_down),
        )
        if consume_manual:
            self._scale_up.clear()
            self._scale_down.clear()
        return plan

    # --- settle: what the runtime says ---------------------------------------------------------

    async def _list_containers(self) -> Listing | None:
        try:
            return await self.runtime.list()
        except RuntimeFailure as exc:
            log.warning("runtime.list_failed", error=str(exc))
            return None

    async def _settle(self, listing: Listing | None) -> None:
        if listing is None:
            return
        by_runner = {c.runner_id: c for c in listing.containers if c.runner_id}
        active = self.journal.active()
        active_ids = {r.id for r in active}
        for runner in active:
            container = by_runner.get(runner.id)
            if runner.state in {RunnerState.IDLE, RunnerState.BUSY}:
                if container is None:
                    if runner.host in listing.unreachable:
                        continue  # unknown, not gone: wait for the host to answer
                    await self._retire(runner, "container_gone", force=True)
                elif not container.running:
                    await self._container_ended(runner, container)
            elif runner.state in {RunnerState.DRAINING, RunnerState.FAILED}:
                await self._retire(runner, "cleanup", force=True)
        for container in listing.containers:
            if container.runner_id in active_ids:
                continue
            await self._remove_orphan(container)

    async def _container_ended(self, runner: Runner, container: ContainerInfo) -> None:
        tail = await self._tail(runner.host, container.id)
        expected = container.exit_code == 0
        if not expected:
            self.metrics.failures.labels(runner.pool, "exited").inc()
        self.journal.update(runner.id, exit_code=container.exit_code, logs_tail=tail)
        log.info(
            "runner.container_ended",
            runner=runner.id,
            pool=runner.pool,
            exit_code=container.exit_code,
        )
        await self._retire(self.journal.get(runner.id), "exited", force=True)

    async def _remove_orphan(self, container: ContainerInfo) -> None:
        log.warning(
            "orphan.container",
            container=container.id[:12],
            host=container.host,
            runner=container.runner_id,
        )
        forge = self._forges.get(container.forge)
        if container.forge_runner_id and forge is not None and not forge.paused:
            try:
                await forge.provider.unregister_runner(container.forge_runner_id)
            except (RunnerNotFound, RunnerBusy):
                pass
            except ProviderError as exc:
                log.warning("orphan.unregister_failed", error=str(exc))
                return
        try:
            await self.runtime.remove(container.host, container.id)
        except RuntimeFailure as exc:
            log.warning("orphan.remove_failed", error=str(exc))
            return
        self.metrics.orphans.labels("container").inc()

    async def _tail(self, host: str, container_id: str) -> str:
        try:
            return await self.runtime.logs(host, container_id, _LOG_TAIL_LINES)
        except RuntimeFailure:
            return ""

    # --- busy / idle --------------------------------------------------------------------------

    def _forge_ref(self, runner: Runner) -> str:
        if runner.forge_runner_id:
            return runner.forge_runner_id
        return self._name_ids.get(runner.name, f"name:{runner.name}")

    async def _refresh_activity(self, *, only: Sequence[Runner] | None = None) -> None:
        now = self.clock()
        stale = timedelta(seconds=max(1.0, self._interval() * 0.9))
        candidates = (
            only
            if only is not None
            else [
                r
                for r in self.journal.active()
                if r.state in {RunnerState.IDLE, RunnerState.BUSY}
                and now - self._activity_at.get(r.id, datetime.min.replace(tzinfo=UTC)) >= stale
            ]
        )
        by_forge: dict[str, list[Runner]] = {}
        for runner in candidates:
            forge = self._forges.get(runner.forge)
            if forge is None or forge.paused:
                continue
            by_forge.setdefault(runner.forge, []).append(runner)
        for forge_name, runners in by_forge.items():
            forge = self._forges[forge_name]
            refs = [self._forge_ref(r) for r in runners]
            try:
                activity = await forge.provider.runner_activity(refs)
            except ProviderError as exc:
                log.warning("forge.activity_failed", forge=forge_name, error=str(exc))
                continue
            by_ref = {a.forge_runner_id: a for a in activity}
            for runner, ref, act in zip(runners, refs, activity, strict=False):
                found = by_ref.get(ref) or by_ref.get(runner.forge_runner_id) or act
                self._apply_activity(runner, found, now)

    def _apply_activity(self, runner: Runner, act: RunnerActivity, now: datetime) -> None:
        self._activity_at[runner.id] = now
        if act.forge_runner_id and not act.forge_runner_id.startswith("name:"):
            self._name_ids[runner.name] = act.forge_runner_id
            if not runner.forge_runner_id:
                self.journal.update(runner.id, forge_runner_id=act.forge_runner_id)
        if not act.exists:
            return  # handled when its container ends (JIT runners deregister themselves)
        fields: dict[str, object] = {}
        if act.last_job_ended_at is not None:
            fields["last_job_ended_at"] = act.last_job_ended_at
        if act.busy and runner.state is RunnerState.IDLE:
            self.journal.transition(
                runner.id,
                RunnerState.BUSY,
                now=now,
                reason="job",
                current_job=act.current_job,
                **fields,
            )
        elif not act.busy and runner.state is RunnerState.BUSY:
            fields.setdefault("last_job_ended_at", now)
            self.journal.transition(
                runner.id, RunnerState.IDLE, now=now, reason="job_done", current_job="", **fields
            )
        elif fields or (act.busy and act.current_job != runner.current_job):
            self.journal.update(
                runner.id, current_job=act.current_job if act.busy else "", **fields
            )

    # --- retire ----------------------------------------------------------------------------------

    async def _retire_request(self, request: RetireRequest) -> bool:
        try:
            runner = self.journal.get(request.runner_id)
        except UnknownRunner:
            return False
        return await self._retire(runner, request.reason)

    async def _retire(self, runner: Runner, reason: str, *, force: bool = False) -> bool:
        """Unregister, then stop and remove. True when the runner is gone.

        Unless ``force`` (the container already ended, or a drain deadline passed), an idle
        runner is re-checked for a job right before it is unregistered, and kept if busy.
        """
        now = self.clock()
        if runner.state is RunnerState.REMOVED:
            return True
        if runner.state is RunnerState.BUSY and not force:
            return False  # never retire a busy runner
        forge = self._forges.get(runner.forge)
        if runner.state is RunnerState.IDLE and not force and forge is not None:
            await self._refresh_activity(only=[runner])
            runner = self.journal.get(runner.id)
            if runner.state is RunnerState.BUSY:
                log.info("retire.skipped_busy", runner=runner.id, pool=runner.pool)
                return False
        if runner.state is not RunnerState.DRAINING:
            if runner.state is RunnerState.REQUESTED:
                # Nothing exists outside yet.
                self.journal.transition(runner.id, RunnerState.DRAINING, now=now, reason=reason)
                self.journal.transition(runner.id, RunnerState.REMOVED, now=now, reason=reason)
                return True
            runner = self.journal.transition(
                runner.id, RunnerState.DRAINING, now=now, reason=reason
            )
        # 1. Unregister first, so the forge stops handing it jobs.
        ref = self._forge_ref(runner)  # "name:<name>" for a self-registering runner
        if forge is None:
            log.warning("retire.forge_unknown", runner=runner.id, forge=runner.forge)
        unregistered = True
        if forge is not None and ref:
            try:
                await forge.provider.unregister_runner(ref, force=force)
            except RunnerNotFound:
                pass
            except RunnerBusy:
                if not force:
                    log.info("retire.kept_busy", runner=runner.id, pool=runner.pool)
                    self.journal.transition(
                        runner.id, RunnerState.BUSY, now=now, reason="forge_refused_busy"
                    )
                    return False
                # The forge will not drop a busy runner (GitHub): stop it first, retry below.
                unregistered = False
            except ProviderError as exc:
                self.metrics.failures.labels(runner.pool, "unregister").inc()
                self.journal.update(runner.id, error=f"unregister failed: {exc}")
                log.warning("retire.unregister_failed", runner=runner.id, error=str(exc))
                return False
        # 2. Then stop and remove the container, keeping its last words.
        if runner.container_id:
            try:
                if not runner.logs_tail:
                    tail = await self._tail(runner.host, runner.container_id)
                    if tail:
                        self.journal.update(runner.id, logs_tail=tail)
                await self.runtime.stop(runner.host, runner.container_id, timeout_s=10.0)
                await self.runtime.remove(runner.host, runner.container_id)
            except RuntimeFailure as exc:
                self.metrics.failures.labels(runner.pool, "remove").inc()
                self.journal.update(runner.id, error=f"container removal failed: {exc}")
                log.warning("retire.remove_failed", runner=runner.id, error=str(exc))
                return False
        if not unregistered and forge is not None:
            try:
                await forge.provider.unregister_runner(ref, force=True)
            except RunnerNotFound:
                pass
            except ProviderError as exc:
                # Stays draining with its container gone: the next reconcile retries.
                self.journal.update(runner.id, error=f"unregister pending: {exc}")
                log.info("retire.unregister_pending", runner=runner.id, error=str(exc))
                return False
        self.journal.transition(runner.id, RunnerState.REMOVED, now=self.clock(), reason=reason)
        self._activity_at.pop(runner.id, None)
        self._name_ids.pop(runner.name, None)
        forget_secret(self._credentials.pop(runner.id, None))
        self.metrics.retired.labels(runner.pool, reason).inc()
        log.info("runner.retired", runner=runner.id, pool=runner.pool, reason=reason)
        return True

    # --- create ----------------------------------------------------------------------------------

    async def _create(self, request: CreateRequest, index: int) -> bool:
        """Journal, register, create, start one runner. True when its container runs."""
        spec = next(p for p in self.pool_specs if p.name == request.pool)
        cfg = self._pools_cfg[request.pool]
        forge = self._forges[spec.forge]
        job_key = request.jobs[index] if index < len(request.jobs) else ""
        async with self._spawn_sem:
            runner_id = secrets.token_hex(6)
            name = f"{runner_name_prefix(self.instance_id)}{spec.name}-{runner_id[:8]}"
            now = self.clock()
            self.journal.create(
                runner_id=runner_id,
                name=name,
                pool=spec.name,
                forge=spec.forge,
                platform=request.platform,
                now=now,
            )
            self.journal.transition(
                runner_id, RunnerState.REGISTERING, now=now, reason=request.reason
            )
            labels = pool_labels(spec, request.platform)
            try:
                registration = await forge.provider.register_runner(
                    RunnerRequest(
                        name=name,
                        pool=spec.name,
                        labels=labels,
                        run_untagged=spec.run_untagged,
                        ephemeral=spec.ephemeral,
                        executor=cfg.executor,
                        executor_args=tuple(cfg.executor_args),
                        idle_timeout_s=int(spec.cooldown_s),
                    )
                )
            except ProviderError as exc:
                if isinstance(exc, ProviderAuthError):
                    self._pause(forge, f"authentication failed: {exc}", self._interval())
                return self._spawn_failed(runner_id, spec.name, "register", exc)
            register_secret(registration.credential)
            self._credentials[runner_id] = registration.credential
            self.journal.transition(
                runner_id,
                RunnerState.STARTING,
                now=self.clock(),
                reason="registered",
                forge_runner_id=registration.forge_runner_id,
            )
            container_spec = ContainerSpec(
                runner_id=runner_id,
                name=name,
                instance_id=self.instance_id,
                pool=spec.name,
                forge=spec.forge,
                forge_runner_id=registration.forge_runner_id,
                image=cfg.image or self.settings.runner_image or DEFAULT_IMAGES[spec.forge_kind],
                command=registration.command,
                credential=registration.credential,
                credential_env=registration.credential_env,
                credential_delivery=self.settings.credential_delivery,
                env={**cfg.env, **registration.env},
                platform=request.platform,
                gpus=_gpus(cfg),
                gpu_capabilities=tuple(cfg.gpu_capabilities),
                cpus=cfg.cpus,
                memory=cfg.memory,
                pids_limit=cfg.pids_limit,
                network=cfg.network,
                volumes=tuple(cfg.volumes),
                privileged=cfg.privileged,
                docker_socket=cfg.docker_socket,
                cap_add=tuple(cfg.cap_add),
                user=cfg.user,
                hosts=tuple(cfg.hosts),
            )
            try:
                info = await self.runtime.create(container_spec)
                self.journal.update(runner_id, container_id=info.id, host=info.host)
                await self.runtime.start_container(info)
            except RuntimeFailure as exc:
                return self._spawn_failed(runner_id, spec.name, "start", exc)
            started = self.clock()
            self.journal.transition(runner_id, RunnerState.IDLE, now=started, reason="started")
            self._backoff.pop(spec.name, None)
            self.metrics.spawned.labels(spec.name).inc()
            queued_at = self._job_created.get(job_key)
            if queued_at is not None:
                self.metrics.pickup_latency.labels(spec.name).observe(
                    max(0.0, (started - queued_at).total_seconds())
                )
            log.info(
                "runner.started",
                runner=runner_id,
                pool=spec.name,
                job=job_key or None,
                platform=request.platform,
                host=info.host,
            )
            return True

    def _spawn_failed(self, runner_id: str, pool: str, stage: str, exc: Exception) -> bool:
        now = self.clock()
        message = f"{stage} failed: {exc}"
        self.journal.transition(runner_id, RunnerState.FAILED, now=now, reason=stage, error=message)
        self.metrics.failures.labels(pool, stage).inc()
        previous = self._backoff.get(pool)
        failures = previous.failures + 1 if previous else 1
        wait = min(_SPAWN_BACKOFF_MAX_S, 2.0**failures)
        self._backoff[pool] = _PoolBackoff(now + timedelta(seconds=wait), failures, message)
        log.warning(
            "runner.spawn_failed",
            runner=runner_id,
            pool=pool,
            stage=stage,
            error=str(exc),
            backoff_s=wait,
        )
        return False

    # --- snapshot --------------------------------------------------------------------------------

    def _refresh_snapshot(
        self,
        *,
        started_at: datetime | None = None,
        duration: float | None = None,
        result: str | None = None,
        error: str | None = None,
    ) -> None:
        previous = self.snapshot
        finished = self.clock()
        active = self.journal.active()
        plan = self._last_plan
        unavailable = self._unavailable_pools()
        pending_by_pool: dict[str, int] = {}
        unmatched = 0
        for waiting in plan.waiting:
            if waiting.pool is None:
                unmatched += 1
            else:
                pending_by_pool[waiting.pool] = pending_by_pool.get(waiting.pool, 0) + 1
        pools = []
        for spec in self.pool_specs:
            mine = [r for r in active if r.pool == spec.name]
            counts: dict[str, int] = {}
            for r in mine:
                counts[r.state.value] = counts.get(r.state.value, 0) + 1
            pools.append(
                PoolStatus(
                    name=spec.name,
                    forge=spec.forge,
                    platform=spec.platform,
                    labels=tuple(sorted(spec.labels)),
                    max_runners=spec.max_runners,
                    min_idle=spec.min_idle,
                    pending_jobs=pending_by_pool.get(spec.name, 0),
                    runners=counts,
                    active=len(mine),
                    unavailable=unavailable.get(spec.name, ""),
                )
            )
        forges = []
        for forge in self._forges.values():
            health = forge.provider.health()
            forges.append(
                ForgeStatus(
                    name=forge.name,
                    kind=forge.kind.value,
                    paused=bool(forge.paused),
                    error=forge.paused,
                    last_ok_at=forge.last_ok_at,
                    pending_jobs=sum(1 for w in plan.waiting if w.job.forge == forge.name),
                    poll_interval_s=health.poll_interval_s or self._interval(),
                    rate_limit_remaining=health.rate_limit_remaining,
                    note=health.note,
                    retry_at=forge.retry_at if forge.paused else None,
                )
            )
        recent = self.journal.recent(200)
        is_run = result is not None
        self.snapshot = Snapshot(
            instance_id=self.instance_id,
            started_at=started_at if is_run else previous.started_at,
            finished_at=finished if is_run else previous.finished_at,
            result=result if result is not None else previous.result,
            error=error if error is not None else previous.error,
            duration_s=duration if duration is not None else previous.duration_s,
            reconciles=previous.reconciles + (1 if is_run else 0),
            pools=tuple(pools),
            forges=tuple(forges),
            hosts=tuple(self.runtime.hosts()),
            waiting=plan.waiting,
            runners=tuple(recent),
            unmatched_jobs=unmatched,
            last_ok_at=finished if result in {"ok", "degraded"} else previous.last_ok_at,
            plan={
                "create": [dataclasses.asdict(c) for c in plan.create],
                "retire": [dataclasses.asdict(r) for r in plan.retire],
            },
        )


def _gpus(cfg: PoolConfig) -> GpuRequest:
    if cfg.gpu == "none":
        return None
    if cfg.gpu == "all":
        return "all"
    return int(cfg.gpu)
