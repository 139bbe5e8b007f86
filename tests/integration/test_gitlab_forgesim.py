"""The real GitLab provider against the GitLab forgesim, over real HTTP on 127.0.0.1.

Every test ends with no runner left on the simulator (checked by the ``sim`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers.base import GitLabOptions, Provider, RunnerRequest, runner_name_prefix
from providers.errors import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)
from providers.gitlab import GitLabProvider
from tests.forgesim.common import RunningSim
from tests.forgesim.gitlab import GitLabSim, create_app

TOKEN = "glpat-sim-token"
INSTANCE = "itest"
SECRET = "hook-secret"


class FakeClock:
    """Monotonic clock the test moves by hand (budget and Retry-After windows)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sim:
    """A running simulator plus small helpers for its control endpoints."""

    def __init__(self, running: RunningSim, state: GitLabSim, http: aiohttp.ClientSession) -> None:
        self.running = running
        self.state = state
        self.http = http
        self.url = running.url

    async def ctl(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.url + path, json=body) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()

    async def add_job(self, project: int, tags: list[str], **extra: Any) -> int:
        answer = await self.ctl(
            "POST", f"/_sim/projects/{project}/jobs", {"tags": tags, "duration": 1, **extra}
        )
        return int(answer["id"])

    async def add_projects(self, *ids: int) -> None:
        for pid in ids:
            await self.ctl("POST", "/_sim/projects", {"id": pid, "path": f"project-{pid}"})

    async def state_json(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.ctl("GET", "/_sim/state")
        return result

    async def fault(self, status: int, seconds: float, retry_after: float | None = None) -> None:
        await self.ctl(
            "POST",
            "/_sim/faults",
            {"status": status, "seconds": seconds, "retry_after": retry_after},
        )


async def _serve(admin: bool) -> AsyncIterator[Sim]:
    app = create_app(TOKEN, admin=admin)
    state = next(v for v in app.values() if isinstance(v, GitLabSim))
    async with RunningSim(app) as running, aiohttp.ClientSession() as http:
        sim = Sim(running, state, http)
        yield sim
        left = (await sim.state_json())["runners"]
        assert left == [], f"runners left on the forgesim: {left}"


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async for s in _serve(admin=True):
        yield s


@pytest.fixture
async def sim_user() -> AsyncIterator[Sim]:
    async for s in _serve(admin=False):
        yield s


@pytest.fixture
def make_provider() -> Any:
    made: list[GitLabProvider] = []

    def make(sim: Sim, **overrides: Any) -> GitLabProvider:
        observer = overrides.pop("observer", None)
        clock = overrides.pop("clock", None)
        sleep = overrides.pop("sleep", None)
        fields: dict[str, Any] = {
            "name": "gitlab",
            "url": sim.url,
            "token": TOKEN,
            "instance_id": INSTANCE,
            "webhook_secret": SECRET,
        }
        fields.update(overrides)
        kwargs: dict[str, Any] = {}
        if observer is not None:
            kwargs["observer"] = observer
        if clock is not None:
            kwargs["clock"] = clock
        if sleep is not None:
            kwargs["sleep"] = sleep
        provider = GitLabProvider(GitLabOptions(**fields), **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider._client.http.session.close()  # sync close: the event loop of the test is gone


def _request(name: str = "pool-a-1", **kw: Any) -> RunnerRequest:
    fields: dict[str, Any] = {
        "name": f"{runner_name_prefix(INSTANCE)}{name}",
        "pool": "pool-a",
        "labels": ("docker", "linux"),
        "run_untagged": False,
        "ephemeral": True,
        "idle_timeout_s": 120,
    }
    fields.update(kw)
    return RunnerRequest(**fields)


class Agent:
    """A tiny gitlab-runner: verify, take one job, finish it (docs/runner-contract.md)."""

    def __init__(self, sim: Sim, token: str) -> None:
        self.sim = sim
        self.token = token

    async def verify(self) -> int:
        async with self.sim.http.post(
            f"{self.sim.url}/api/v4/runners/verify", json={"token": self.token}
        ) as resp:
            return resp.status

    async def take(self) -> dict[str, Any] | None:
        body = {"token": self.token, "system_id": "s_sim", "info": {"name": "agent"}}
        async with self.sim.http.post(f"{self.sim.url}/api/v4/jobs/request", json=body) as resp:
            if resp.status == 204:
                return None
            assert resp.status == 201, await resp.text()
            job: dict[str, Any] = await resp.json()
            return job

    async def finish(self, job: dict[str, Any], state: str = "success") -> int:
        async with self.sim.http.put(
            f"{self.sim.url}/api/v4/jobs/{job['id']}", json={"token": job["token"], "state": state}
        ) as resp:
            return resp.status


# ---------------------------------------------------------------------------------------


async def test_provider_satisfies_protocol(sim: Sim, make_provider: Any) -> None:
    provider = make_provider(sim, projects=("1",))
    assert isinstance(provider, Provider)
    assert (provider.name, provider.kind) == ("gitlab", "gitlab")


async def test_pending_jobs_have_the_right_tags(sim: Sim, make_provider: Any) -> None:
    a = await sim.add_job(1, ["docker", "linux"])
    b = await sim.add_job(2, [])
    created = await sim.add_job(2, ["arm64"], status="created")
    running = await sim.add_job(1, ["docker"])
    await sim.ctl("POST", f"/_sim/jobs/{running}", {"status": "running"})
    await sim.ctl("POST", "/_sim/projects", {"id": 3, "path": "tools"})
    c = await sim.add_job(3, ["gpu"])

    provider = make_provider(sim, projects=("1", "2", "sim/tools"))
    jobs = {j.id: j for j in await provider.pending_jobs()}
    assert set(jobs) == {str(a), str(b), str(c)}
    assert jobs[str(a)].tags == ("docker", "linux")
    assert jobs[str(a)].scope == "1"
    assert jobs[str(b)].tags == ()
    assert jobs[str(c)].scope == "sim/tools"
    assert jobs[str(c)].pipeline
    assert jobs[str(a)].created_at.tzinfo is not None

    with_created = make_provider(sim, projects=("2",), include_created=True)
    assert {j.id for j in await with_created.pending_jobs()} == {str(b), str(created)}


async def test_runner_lifecycle_with_agent(sim: Sim, make_provider: Any) -> None:
    job_id = await sim.add_job(7, ["docker"])
    provider = make_provider(sim, projects=("7",))
    reg = await provider.register_runner(
        _request(executor="docker", executor_args=("--docker-image", "alpine"))
    )
    assert reg.credential.startswith("glrt-")
    assert reg.credential_env == "CI_SERVER_TOKEN"
    assert reg.credential not in reg.command
    assert reg.command == (
        "gitlab-runner",
        "run-single",
        "--url",
        sim.url,
        "--executor",
        "docker",
        "--max-builds",
        "1",
        "--wait-timeout",
        "120",
        "--docker-image",
        "alpine",
    )
    (runner,) = (await sim.state_json())["runners"]
    assert runner == {
        "id": int(reg.forge_runner_id),
        "description": reg.name,
        "tags": ["docker", "linux"],
        "run_untagged": False,
    }
    assert sim.state.runners[runner["id"]].runner_type == "project_type"

    (idle,) = await provider.runner_activity([reg.forge_runner_id])
    assert (idle.busy, idle.exists, idle.last_job_ended_at) == (False, True, None)

    agent = Agent(sim, reg.credential)
    assert await agent.verify() == 200
    assert await Agent(sim, "glrt-wrong").verify() == 403
    job = await agent.take()
    assert job is not None
    assert job["id"] == job_id
    assert await agent.take() is None  # nothing else matches

    (busy,) = await provider.runner_activity([reg.forge_runner_id])
    assert busy.busy
    assert busy.current_job == str(job_id)
    assert [r.busy for r in await provider.list_own_runners()] == [True]
    assert await provider.pending_jobs() == []

    assert await agent.finish(job) == 200
    (done,) = await provider.runner_activity([reg.forge_runner_id])
    assert not done.busy
    assert done.last_job_ended_at is not None

    await provider.unregister_runner(reg.forge_runner_id)
    assert (await sim.state_json())["runners"] == []
    (gone,) = await provider.runner_activity([reg.forge_runner_id])
    assert gone.exists is False
    with pytest.raises(RunnerNotFound):
        await provider.unregister_runner(reg.forge_runner_id)
    assert await provider.list_own_runners() == []


async def test_a_runner_running_a_job_is_kept_and_unpaused(sim: Sim, make_provider: Any) -> None:
    """GitLab would delete it and lose the job; the provider refuses instead."""
    await sim.add_job(8, ["docker"])
    provider = make_provider(sim, projects=("8",))
    reg = await provider.register_runner(_request(labels=("docker",)))
    agent = Agent(sim, reg.credential)
    job = await agent.take()
    assert job is not None
    with pytest.raises(RunnerBusy):
        await provider.unregister_runner(reg.forge_runner_id)
    runner = sim.state.runners[int(reg.forge_runner_id)]
    assert runner.paused is False  # it may take jobs again
    await agent.finish(job)
    await provider.unregister_runner(reg.forge_runner_id)
    assert (await sim.state_json())["runners"] == []


async def test_a_paused_runner_is_handed_no_job(sim: Sim, make_provider: Any) -> None:
    await sim.ctl("POST", "/_sim/projects", {"id": 8, "path": "app"})
    provider = make_provider(sim, projects=("8",))
    reg = await provider.register_runner(_request(labels=("docker",)))
    sim.state.runners[int(reg.forge_runner_id)].paused = True
    await sim.add_job(8, ["docker"])
    assert await Agent(sim, reg.credential).take() is None
    await sim.ctl(
        "POST", f"/_sim/jobs/{(await sim.state_json())['jobs'][0]['id']}", {"status": "canceled"}
    )
    await provider.unregister_runner(reg.forge_runner_id)


async def test_runner_types_follow_the_scope(sim: Sim, make_provider: Any) -> None:
    group = await sim.ctl("POST", "/_sim/groups", {"path": "team"})
    await sim.ctl("POST", "/_sim/projects", {"path": "app", "group_id": group["id"]})
    by_group = make_provider(sim, groups=("team",))
    instance = make_provider(sim, instance=True)
    explicit = make_provider(sim, projects=("team/app",))
    regs = [
        await p.register_runner(_request(f"r{i}"))
        for i, p in enumerate((by_group, instance, explicit))
    ]
    types = [sim.state.runners[int(r.forge_runner_id)].runner_type for r in regs]
    assert types == ["group_type", "instance_type", "project_type"]
    assert sim.state.runners[int(regs[0].forge_runner_id)].group_id == group["id"]
    for reg in regs:
        await instance.unregister_runner(reg.forge_runner_id)


async def test_groups_with_subgroups_over_three_pages(sim: Sim, make_provider: Any) -> None:
    top = await sim.ctl("POST", "/_sim/groups", {"path": "top"})
    sub = await sim.ctl("POST", "/_sim/groups", {"path": "sub", "parent_id": top["id"]})
    deep = await sim.ctl("POST", "/_sim/groups", {"path": "deep", "parent_id": sub["id"]})
    for i in range(110):
        await sim.ctl("POST", "/_sim/projects", {"path": f"p{i}", "group_id": top["id"]})
    for i in range(100):
        await sim.ctl("POST", "/_sim/projects", {"path": f"s{i}", "group_id": sub["id"]})
    last = await sim.ctl("POST", "/_sim/projects", {"path": "last", "group_id": deep["id"]})
    job = await sim.add_job(last["id"], ["deep-tag"])

    sim.state.jobs_per_minute = 10_000  # 3 polls of 211 projects: above GitLab's 600/min
    clock = FakeClock()
    provider = make_provider(sim, groups=("top",), requests_per_minute=100_000, clock=clock)
    jobs = await provider.pending_jobs()
    assert [(j.id, j.scope, j.tags) for j in jobs] == [
        (str(job), "top/sub/deep/last", ("deep-tag",))
    ]
    pages = [r for r in sim.state.requests if r.path.endswith("/projects")]
    assert len(pages) == 3  # 211 projects, 100 a page, followed via Link
    assert all("include_subgroups=true" in r.query for r in pages)

    # cached: no second expansion until group_refresh_s has passed
    await provider.pending_jobs()
    assert len([r for r in sim.state.requests if r.path.endswith("/projects")]) == 3
    clock.advance(301)
    await provider.pending_jobs()
    assert len([r for r in sim.state.requests if r.path.endswith("/projects")]) == 6

    # the subgroups endpoint is served too (paginated like the rest)
    async with sim.http.get(
        f"{sim.url}/api/v4/groups/{top['id']}/subgroups", headers={"PRIVATE-TOKEN": TOKEN}
    ) as resp:
        assert [g["full_path"] for g in await resp.json()] == ["top/sub"]


async def test_429_storm_gives_rate_limited_quickly(sim: Sim, make_provider: Any) -> None:
    await sim.add_job(1, ["x"])
    clock = FakeClock()
    provider = make_provider(sim, projects=("1", "2", "3"), clock=clock)
    await sim.fault(429, seconds=1.0, retry_after=7)
    started = time.monotonic()
    with pytest.raises(RateLimited) as info:
        await provider.pending_jobs()
    assert info.value.retry_after == pytest.approx(7, abs=0.5)
    before = sim.state.request_count
    for call in (
        provider.pending_jobs,
        lambda: provider.register_runner(_request()),
        provider.list_own_runners,
    ):
        with pytest.raises(RateLimited):
            await call()
    assert sim.state.request_count == before  # honoured: no request while told to wait
    assert time.monotonic() - started < 2
    assert "rate limited" in provider.health().note

    await asyncio.sleep(1.05)  # the fault ends ...
    clock.advance(7)  # ... and so does the Retry-After window
    assert [j.tags for j in await provider.pending_jobs()] == [("x",)]


async def test_5xx_storm_gives_transient_errors_quickly(sim: Sim, make_provider: Any) -> None:
    await sim.add_projects(1, 2)
    provider = make_provider(sim, projects=("1", "2"))
    reg = await provider.register_runner(_request())
    for status in (500, 503):
        await sim.fault(status, seconds=30)
        started = time.monotonic()
        calls: list[Callable[[], Any]] = [
            provider.pending_jobs,
            lambda: provider.register_runner(_request("x")),
            provider.list_own_runners,
            lambda: provider.unregister_runner(reg.forge_runner_id),
        ]
        for call in calls:
            with pytest.raises(TransientProviderError) as info:
                await call()
            assert not isinstance(info.value, RateLimited)
        with pytest.raises(TransientProviderError):
            await provider.runner_activity([reg.forge_runner_id])
        assert time.monotonic() - started < 3
    await sim.fault(0, seconds=0)
    await provider.unregister_runner(reg.forge_runner_id)


async def test_slow_forge_times_out_as_transient(sim: Sim, make_provider: Any) -> None:
    provider = make_provider(sim, projects=("1",), request_timeout_s=0.3)
    await sim.ctl("POST", "/_sim/faults", {"status": 0, "seconds": 2, "delay": 1.0})
    started = time.monotonic()
    with pytest.raises(TransientProviderError):
        await provider.pending_jobs()
    assert time.monotonic() - started < 1.5


async def test_connection_refused_is_transient_and_observed(make_provider: Any) -> None:
    seen: list[tuple[str, str, int]] = []
    options = GitLabOptions(
        name="gl", url="http://127.0.0.1:9", token=TOKEN, instance_id=INSTANCE, projects=("1",)
    )
    provider = GitLabProvider(options, observer=lambda *a: seen.append(a))
    with pytest.raises(TransientProviderError):
        await provider.pending_jobs()
    assert seen == [("gl", "GET /projects/:id/jobs", 0)]
    assert provider.health().requests_total == 1
    await provider.aclose()


async def test_bad_token_is_an_auth_error(sim: Sim) -> None:
    provider = GitLabProvider(
        GitLabOptions(name="gl", url=sim.url, token="wrong", instance_id=INSTANCE, projects=("1",))
    )
    with pytest.raises(ProviderAuthError):
        await provider.pending_jobs()
    with pytest.raises(ProviderAuthError):
        await provider.register_runner(_request())
    await provider.aclose()


async def test_every_request_is_observed(sim: Sim, make_provider: Any) -> None:
    seen: list[tuple[str, str, int]] = []
    provider = make_provider(
        sim, projects=("1", "sim/project-2"), observer=lambda *a: seen.append(a)
    )
    await sim.add_job(1, ["a"])
    await sim.add_job(2, ["b"])
    await provider.pending_jobs()
    reg = await provider.register_runner(_request())
    await provider.runner_activity([reg.forge_runner_id])
    await provider.list_own_runners()
    await provider.unregister_runner(reg.forge_runner_id)
    assert len(seen) == sim.state.request_count == provider.health().requests_total
    endpoints = {e for _, e, _ in seen}
    assert endpoints == {
        "GET /projects/:id/jobs",
        "POST /user/runners",
        "GET /runners/:id/jobs",
        "GET /runners",
        "GET /runners/:id",
        "DELETE /runners/:id",
        "PUT /runners/:id",
    }
    assert {s for *_, s in seen} == {200, 201, 204}
    assert provider.health().rate_limit_remaining is not None
    assert provider.health().rate_limit_limit == 600


async def test_foreign_runners_are_never_listed_nor_deleted(sim: Sim, make_provider: Any) -> None:
    await sim.add_projects(1)
    provider = make_provider(sim, projects=("1",))
    other_instance = make_provider(sim, projects=("1",), instance_id="other")
    mine = await provider.register_runner(_request())
    theirs = await other_instance.register_runner(
        RunnerRequest(
            name=f"{runner_name_prefix('other')}pool-a-1",
            pool="pool-a",
            labels=(),
            run_untagged=True,
            ephemeral=False,
        )
    )
    manual = await sim.ctl("POST", "/_sim/runners", {"description": "hand-made", "tags": ["x"]})
    # a description that merely contains the prefix is not ours either
    tricky = await sim.ctl(
        "POST", "/_sim/runners", {"description": f"x-{runner_name_prefix(INSTANCE)}1"}
    )

    assert [r.id for r in await provider.list_own_runners()] == [mine.forge_runner_id]
    for foreign in (theirs.forge_runner_id, str(manual["id"]), str(tricky["id"])):
        with pytest.raises(PermanentProviderError):
            await provider.unregister_runner(foreign)
    assert len((await sim.state_json())["runners"]) == 4

    await provider.unregister_runner(mine.forge_runner_id)
    await other_instance.unregister_runner(theirs.forge_runner_id)
    for rid in (manual["id"], tricky["id"]):
        async with sim.http.delete(
            f"{sim.url}/api/v4/runners/{rid}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            assert resp.status == 204


async def test_budget_with_twenty_projects(sim: Sim, make_provider: Any) -> None:
    job_ids = {await sim.add_job(p, [f"t{p}"]) for p in range(1, 21)}
    clock = FakeClock()
    provider = make_provider(
        sim, projects=tuple(str(p) for p in range(1, 21)), requests_per_minute=60, clock=clock
    )
    for _ in range(10):  # a burst of polls at one instant: only the burst allowance is sent
        await provider.pending_jobs()
    assert sim.state.request_count == 10
    clock.advance(60)
    seen_jobs: set[str] = set()
    sent_at: list[float] = []
    for _ in range(120):  # two simulated minutes, one poll a second
        before = sim.state.request_count
        seen_jobs = {j.id for j in await provider.pending_jobs()}
        sent_at.extend([clock()] * (sim.state.request_count - before))
        clock.advance(1)
    # never more than 60 requests in any 60 s window
    for start in sent_at:
        assert sum(1 for t in sent_at if start <= t < start + 60) <= 60
    assert len(sent_at) <= 120
    assert seen_jobs == {str(j) for j in job_ids}  # demand stays complete
    assert "budget" in provider.health().note or len(sent_at) > 0


async def test_jobs_list_limit_of_the_forge_is_honoured(sim: Sim, make_provider: Any) -> None:
    sim.state.jobs_per_minute = 3
    await sim.add_projects(1, 2, 3, 4)
    clock = FakeClock()
    provider = make_provider(sim, projects=("1", "2", "3", "4"), clock=clock)
    with pytest.raises(RateLimited) as info:
        await provider.pending_jobs()
    assert 0 < (info.value.retry_after or 0) <= 61
    assert provider.health().rate_limit_remaining == 0


async def test_instance_scope_uses_graphql(sim: Sim, make_provider: Any) -> None:
    ids = {await sim.add_job(p, ["t"]) for p in (1, 2, 3)}
    provider = make_provider(sim, instance=True, include_created=False)
    jobs = await provider.pending_jobs()
    assert {j.id for j in jobs} == {str(i) for i in ids}
    assert {j.scope for j in jobs} == {"sim/project-1", "sim/project-2", "sim/project-3"}
    assert all(r.path == "/api/graphql" for r in sim.state.requests)


async def test_instance_scope_falls_back_for_non_admin(sim_user: Sim, make_provider: Any) -> None:
    job = await sim_user.add_job(5, ["t"])
    provider = make_provider(sim_user, instance=True, projects=("5",))
    assert [j.id for j in await provider.pending_jobs()] == [str(job)]
    paths = [r.path for r in sim_user.state.requests]
    assert paths == ["/api/graphql", "/api/v4/projects/5/jobs"]
    await sim_user.add_projects(6)
    reg = await make_provider(sim_user, projects=("6",)).register_runner(_request())
    # /runners/all is admin-only (403): the provider falls back to /runners
    assert [r.id for r in await provider.list_own_runners()] == [reg.forge_runner_id]
    await provider.unregister_runner(reg.forge_runner_id)


def _hook(status: str, job: int, project: int = 1, **extra: Any) -> bytes:
    return json.dumps(
        {
            "object_kind": "build",
            "build_id": job,
            "build_status": status,
            "project_id": project,
            "runner": None,
            **extra,
        }
    ).encode()


async def test_webhooks(sim: Sim, make_provider: Any) -> None:
    provider = make_provider(sim, projects=("1",))
    job = await sim.add_job(1, ["docker", "arm64"])
    good = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Job Hook"}

    result = await provider.handle_webhook(good, _hook("pending", job))
    assert result.nudge
    assert result.event == "Job Hook pending"
    assert [(j.id, j.tags) for j in result.jobs] == [(str(job), ("docker", "arm64"))]

    for status in ("running", "success", "failed", "canceled"):
        result = await provider.handle_webhook(good, _hook(status, job))
        assert result.nudge
        assert result.finished_job_ids == (str(job),)
    other = await provider.handle_webhook({**good, "X-Gitlab-Event": "Push Hook"}, b"{}")
    assert not other.nudge

    bad_cases: list[tuple[dict[str, str], bytes, int]] = [
        ({**good, "X-Gitlab-Token": "nope"}, _hook("pending", job), 401),
        ({"X-Gitlab-Event": "Job Hook"}, _hook("pending", job), 401),
        (good, b"{not json", 400),
        (good, b"[1, 2]", 400),
        (good, _hook("pending", "12"), 400),  # type: ignore[arg-type]
        (good, _hook("pending", job, project="1"), 400),  # type: ignore[arg-type]
        (good, _hook("pending", job, build_status=3), 400),
        (good, json.dumps({"object_kind": "pipeline"}).encode(), 400),
    ]
    for headers, body, status in bad_cases:
        with pytest.raises(WebhookRejected) as info:
            await provider.handle_webhook(headers, body)
        assert info.value.status == status

    unconfigured = make_provider(sim, projects=("1",), webhook_secret="")
    with pytest.raises(WebhookRejected) as info:
        await unconfigured.handle_webhook(good, _hook("pending", job))
    assert info.value.status in (403, 404)


async def test_pending_webhook_survives_a_failing_lookup(sim: Sim, make_provider: Any) -> None:
    provider = make_provider(sim, projects=("1",))
    headers = {"x-gitlab-token": SECRET, "x-gitlab-event": "Job Hook"}
    result = await provider.handle_webhook(headers, _hook("pending", 999, 1))
    assert result.nudge
    assert result.jobs == ()


def test_standalone_entry_point() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.forgesim", "gitlab", "--port", "0", "--token", "T"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("forgesim gitlab listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[-1]
        import requests  # noqa: PLC0415

        assert requests.get(f"{url}/_sim/state", timeout=5).json()["runners"] == []
        assert requests.get(f"{url}/api/v4/user", timeout=5).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_graphql_pages_are_followed(sim: Sim, make_provider: Any) -> None:
    ids = {await sim.add_job(1 + i % 3, ["t"]) for i in range(150)}
    await sim.add_job(1, ["c"], status="created")
    provider = make_provider(sim, instance=True)
    assert {j.id for j in await provider.pending_jobs()} == {str(i) for i in ids}
    assert [r.path for r in sim.state.requests] == ["/api/graphql"] * 2
    with_created = make_provider(sim, instance=True, include_created=True)
    assert len(await with_created.pending_jobs()) == 151


# -- issue 11.2: busy runners must not starve the job poll ------------------------------
# Measured on the old code: 12 busy runners, the default 300 requests/min and a 2 s
# reconcile spent 516 requests on per-runner activity checks against 9 job polls in two
# minutes, and a new job stayed unseen for over 60 s. Here the same load runs on a clock
# the test moves, and every request is classified by its endpoint.


async def _no_sleep(_seconds: float) -> None:
    """The budget never waits for real: the test's clock is the only time."""


async def test_busy_runners_leave_the_job_poll_its_share(sim: Sim, make_provider: Any) -> None:
    for _ in range(12):
        await sim.add_job(1, ["docker"])
    clock = FakeClock()
    seen: Counter[str] = Counter()
    sent_at: list[float] = []

    def observe(_forge: str, endpoint: str, _status: int) -> None:
        seen[endpoint] += 1
        sent_at.append(clock())

    provider = make_provider(sim, projects=("1",), clock=clock, observer=observe, sleep=_no_sleep)
    ids = []
    for i in range(12):
        reg = await provider.register_runner(_request(f"busy-{i}"))
        assert await Agent(sim, reg.credential).take() is not None
        ids.append(reg.forge_runner_id)
        clock.advance(1)
    clock.advance(60)
    seen.clear()
    sent_at.clear()

    rounds, new_job, seen_in_round = 60, None, None
    for round_no in range(rounds):  # two minutes of a 2 s reconcile
        if round_no == 20:
            new_job = str(await sim.add_job(1, ["docker"]))
        pending = {j.id for j in await provider.pending_jobs()}
        if new_job in pending and seen_in_round is None:
            seen_in_round = round_no
        try:
            activity = await provider.runner_activity(ids)
            assert all(a.busy for a in activity)
        except ProviderError:
            pass  # the reconciler logs and keeps its last view; polls go on
        clock.advance(2)

    polls = seen["GET /projects/:id/jobs"]
    activity_requests = sum(n for e, n in seen.items() if e.startswith("GET /runners"))
    assert polls >= rounds - 1, seen  # every round saw the forge's demand
    assert seen_in_round is not None and seen_in_round - 20 <= 1  # within one interval
    assert activity_requests <= rounds + 12, seen  # one listing a round, not one per runner
    age = provider.health().demand_age_s
    assert age is not None and age <= 2  # the view /ready judges is one interval old
    for start in sent_at:  # and the whole stays inside 300 requests in any minute
        assert sum(1 for t in sent_at if start <= t < start + 60) <= 300
    for rid in ids:
        await provider.unregister_runner(rid, force=True)


# -- issue 11 fault drills on the forgesim's fault book ----------------------------------


async def test_a_forbidden_project_is_skipped_while_the_others_are_served(
    sim: Sim, make_provider: Any
) -> None:
    """Issue 11.4: one 403 (CI/CD disabled, Guest) used to pause the whole forge."""
    await sim.add_projects(1, 2, 3)
    jobs = {await sim.add_job(p, ["docker"]) for p in (1, 3)}
    await sim.add_job(2, ["docker"])
    await sim.ctl(
        "POST", "/_sim/faults", {"kind": "forbidden", "project": 2, "reason": "CI disabled"}
    )
    clock = FakeClock()
    provider = make_provider(sim, projects=("1", "2", "3"), clock=clock)
    assert {j.id for j in await provider.pending_jobs()} == {str(j) for j in jobs}
    health = provider.health()
    assert "403" in health.scope_errors["2"]
    polled: Counter[str] = Counter()
    watcher = make_provider(
        sim,
        projects=("1", "2", "3"),
        clock=clock,
        observer=lambda _f, e, _s: polled.update([e]),
    )
    await watcher.pending_jobs()
    await watcher.pending_jobs()  # asked once more the next round, refused again
    first = polled["GET /projects/:id/jobs"]
    await watcher.pending_jobs()  # now project 2 waits out its backoff: 2 requests, not 3
    assert polled["GET /projects/:id/jobs"] - first == 2
    assert await watcher.list_own_runners() == []  # the forge itself is not paused
    await sim.ctl("DELETE", "/_sim/faults")
    clock.advance(31)  # the backoff has passed: project 2 is asked again, and served
    assert len(await watcher.pending_jobs()) == 3
    assert watcher.health().scope_errors == {}


@pytest.mark.parametrize("retry_after", [None, 7, 1e15])
async def test_the_jobs_limiter_429_shapes_are_rate_limits_with_bounded_waits(
    sim: Sim, make_provider: Any, retry_after: float | None
) -> None:
    """Issue 11.5c/11.3: a 429 with only Retry-After, or nothing; absurd values clamped."""
    await sim.add_projects(1)
    body: dict[str, Any] = {"kind": "rate_limit", "shape": "jobs_limiter", "count": 1}
    if retry_after is not None:
        body["retry_after"] = retry_after
    await sim.ctl("POST", "/_sim/faults", body)
    provider = make_provider(sim, projects=("1",), clock=FakeClock())
    with pytest.raises(RateLimited) as caught:
        await provider.pending_jobs()
    wait = caught.value.retry_after
    assert wait is not None and 1 <= wait <= 900
    if retry_after == 7:
        assert wait == 7
    assert provider.health().rate_limit_remaining is None  # GitLab did not say


async def test_a_trickling_gitlab_cannot_hold_a_poll_past_the_deadline(
    sim: Sim, make_provider: Any
) -> None:
    await sim.add_projects(1)
    await sim.add_job(1, ["docker"])
    await sim.ctl(
        "POST", "/_sim/faults", {"kind": "trickle", "interval": 0.5, "seconds": 5, "count": 1}
    )
    provider = make_provider(sim, projects=("1",), call_deadline_s=1.0)
    with pytest.raises(TransientProviderError, match="deadline|complete answer"):
        await provider.pending_jobs()


async def test_a_cross_host_redirect_never_gets_the_private_token(
    sim: Sim, make_provider: Any
) -> None:
    """Issue 12.3d: python-gitlab followed it and re-sent PRIVATE-TOKEN to the new host."""
    await sim.ctl("POST", "/_sim/faults", {"kind": "redirect", "seconds": 30})
    provider = make_provider(sim, projects=("1",))
    with pytest.raises(PermanentProviderError, match="refused a redirect"):
        await provider.list_own_runners()
    stats = await sim.ctl("GET", "/_sim/stats")
    assert stats["trap"]["hits"] == []


# -- issue 15 (stretch): many projects per GraphQL request, REST behind it ----------------


async def test_graphql_poll_sees_100_projects_in_one_request(sim: Sim, make_provider: Any) -> None:
    """REST needs one request per project (50 a round at the default budget, so half the
    projects waited two intervals); GraphQL lists them all in one."""
    await sim.add_projects(*range(1, 101))
    wanted = {str(await sim.add_job(p, ["docker"])) for p in range(1, 101)}
    running = await sim.add_job(5, ["docker"])
    await sim.ctl("POST", f"/_sim/jobs/{running}", {"status": "running"})
    seen: Counter[str] = Counter()
    provider = make_provider(
        sim,
        projects=tuple(str(p) for p in range(1, 101)),
        graphql_poll=True,
        observer=lambda _f, e, _s: seen.update([e]),
    )
    jobs = await provider.pending_jobs()
    assert {j.id for j in jobs} == wanted
    assert {j.scope for j in jobs} == {str(p) for p in range(1, 101)}
    assert seen == Counter({"POST /graphql": 1})


async def test_graphql_poll_hands_missing_projects_and_refusals_to_rest(
    sim: Sim, make_provider: Any
) -> None:
    await sim.add_projects(1, 3)
    wanted = {str(await sim.add_job(p, ["docker"])) for p in (1, 3)}
    seen: Counter[str] = Counter()
    provider = make_provider(
        sim,
        projects=("1", "404", "3"),  # 404: not in the GraphQL answer, so REST asks it
        graphql_poll=True,
        clock=FakeClock(),
        observer=lambda _f, e, _s: seen.update([e]),
    )
    assert {j.id for j in await provider.pending_jobs()} == wanted
    assert "404" in provider.health().scope_errors  # REST asked it and was refused
    assert (seen["POST /graphql"], seen["GET /projects/:id/jobs"]) == (1, 1)
    await sim.ctl("POST", "/_sim/faults", {"kind": "graphql_refused", "shape": "not_found"})
    seen.clear()
    assert {j.id for j in await provider.pending_jobs()} == wanted
    assert (seen["POST /graphql"], seen["GET /projects/:id/jobs"]) == (1, 3)  # 404 once more
    seen.clear()
    await provider.pending_jobs()
    assert seen["GET /projects/:id/jobs"] == 2  # now 404 backs off
    assert seen["POST /graphql"] == 0  # refused: not asked again for an hour


async def test_a_huge_backlog_is_read_only_up_to_the_cap_and_counted(
    sim: Sim, make_provider: Any
) -> None:
    """Issue 12.8: a forge page of 100k jobs was taken whole (25 MB /status, +160 MB RSS)."""
    await sim.ctl("POST", "/_sim/projects/1/jobs", {"tags": ["docker"], "count": 150})
    await sim.ctl("POST", "/_sim/faults", {"kind": "oversized_page", "size": 5000})
    provider = make_provider(sim, projects=("1",), max_jobs_per_scope=120)
    assert len(await provider.pending_jobs()) == 120
    assert provider.health().jobs_capped == {"1": 120}
    await sim.ctl("DELETE", "/_sim/faults")
    roomy = make_provider(sim, projects=("1",), max_jobs_per_scope=1000)
    assert len(await roomy.pending_jobs()) == 150
    assert roomy.health().jobs_capped == {}


# --- several projects or groups: a runner goes where its job is ----------------------------


async def test_a_job_in_the_second_project_gets_a_project_runner_there(
    sim: Sim, make_provider: Any
) -> None:
    # The bug: every project runner was created in the FIRST project, and GitLab hands a
    # project runner only its own project's jobs, so a job in project 12 waited forever.
    await sim.add_projects(11, 12)
    job_id = await sim.add_job(12, ["docker"])
    provider = make_provider(sim, projects=("11", "12"))
    (pending,) = await provider.pending_jobs()
    reg = await provider.register_runner(_request(scope=pending.scope))
    runner = sim.state.runners[int(reg.forge_runner_id)]
    assert (runner.runner_type, runner.project_id) == ("project_type", 12)
    agent = Agent(sim, reg.credential)
    job = await agent.take()
    assert job is not None and job["id"] == job_id
    assert await agent.finish(job) == 200
    (activity,) = await provider.runner_activity([reg.forge_runner_id])
    assert activity.exists and activity.last_job_ended_at is not None
    await provider.unregister_runner(reg.forge_runner_id)

    # A runner in project 11 (the old choice) cannot take project 12's job.
    other = await sim.add_job(12, ["docker"])
    wrong = await provider.register_runner(_request("pool-a-2", scope="11"))
    assert await Agent(sim, wrong.credential).take() is None
    await provider.unregister_runner(wrong.forge_runner_id)
    await sim.ctl("POST", f"/_sim/jobs/{other}", {"status": "canceled"})


async def test_a_job_in_the_second_group_gets_a_group_runner_of_that_group(
    sim: Sim, make_provider: Any
) -> None:
    first = await sim.ctl("POST", "/_sim/groups", {"path": "alpha"})
    second = await sim.ctl("POST", "/_sim/groups", {"path": "beta"})
    sub = await sim.ctl("POST", "/_sim/groups", {"path": "sub", "parent_id": second["id"]})
    await sim.ctl("POST", "/_sim/projects", {"id": 21, "path": "a", "group_id": first["id"]})
    await sim.ctl("POST", "/_sim/projects", {"id": 22, "path": "b", "group_id": sub["id"]})
    job_id = await sim.add_job(22, ["docker"])
    # One group by path, one by id: both are matched against the job's project path.
    provider = make_provider(sim, groups=("alpha", str(second["id"])))
    (pending,) = await provider.pending_jobs()
    reg = await provider.register_runner(_request(scope=pending.scope))
    runner = sim.state.runners[int(reg.forge_runner_id)]
    assert (runner.runner_type, runner.group_id) == ("group_type", second["id"])
    agent = Agent(sim, reg.credential)
    job = await agent.take()
    assert job is not None and job["id"] == job_id
    assert await agent.finish(job) == 200
    await provider.unregister_runner(reg.forge_runner_id)
