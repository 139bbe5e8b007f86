"""GitHubProvider against the GitHub forge simulator, over real HTTP on 127.0.0.1.

A tiny in-test agent plays the runner (docs/runner-contract.md, ``/_runner/...``). Every
test ends with no runner registration left on the simulator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from providers.base import GitHubOptions, RunnerRequest, runner_name_prefix
from providers.errors import (
    AccessDenied,
    PermanentProviderError,
    ProviderAuthError,
    RateLimited,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)
from providers.github import GitHubProvider
from tests.forgesim.common import SIM_KEY, RunningSim
from tests.forgesim.github import create_app

TOKEN = "ghp_simtoken"
INSTANCE = "it1"
PREFIX = runner_name_prefix(INSTANCE)
LABELS = ("self-hosted", "linux", "x64")


class Sim:
    """The running simulator plus a client session for control and agent calls."""

    def __init__(self, running: RunningSim, http: aiohttp.ClientSession) -> None:
        self.running = running
        self.url = running.url
        self.http = http

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.http.post(self.url + path, json=body or {}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def state(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/_sim/state") as resp:
            return dict(await resp.json())

    async def job(
        self, repo: str, labels: tuple[str, ...] = ("linux",), run_id: int | None = None
    ) -> int:
        body: dict[str, Any] = {"labels": list(labels), "duration": 0}
        if run_id is not None:
            body["run_id"] = run_id
        return int((await self.post(f"/_sim/repos/{repo}/jobs", body))["id"])

    async def api_requests(self) -> int:
        return sum(1 for r in self.running.app[SIM_KEY].requests if r.path.startswith("/api/v3/"))


class Agent:
    """A runner as docs/runner-contract.md describes it, speaking ``/_runner/``."""

    def __init__(self, sim: Sim, secret: str) -> None:
        self.sim = sim
        self.headers = {"Authorization": f"RunnerToken {secret}"}

    @classmethod
    def from_jit(cls, sim: Sim, encoded: str) -> tuple[Agent, dict[str, Any]]:
        config = json.loads(base64.b64decode(encoded))
        assert config["url"] == sim.url
        return cls(sim, config["token"]), config

    @classmethod
    async def register(cls, sim: Sim, token: str, name: str, labels: str, url: str) -> Agent:
        body = {"token": token, "name": name, "labels": labels, "url": url}
        async with sim.http.post(sim.url + "/_runner/register", json=body) as resp:
            assert resp.status == 201, await resp.text()
            data = await resp.json()
        return cls(sim, data["token"])

    async def acquire(self) -> tuple[int, int | None]:
        async with self.sim.http.post(
            self.sim.url + "/_runner/acquire", headers=self.headers
        ) as resp:
            if resp.status == 200:
                return 200, int((await resp.json())["job_id"])
            return resp.status, None

    async def complete(self, job_id: int) -> None:
        async with self.sim.http.post(
            f"{self.sim.url}/_runner/jobs/{job_id}/complete",
            headers=self.headers,
            json={"conclusion": "success"},
        ) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with RunningSim(create_app(TOKEN)) as running, aiohttp.ClientSession() as http:
        s = Sim(running, http)
        await s.post("/_sim/repos/octo/app")  # the default scope exists, as on GitHub
        yield s
        assert (await s.state())["runners"] == [], "a test left a runner registered"


@pytest.fixture
def make_provider(sim: Sim) -> Callable[..., GitHubProvider]:
    made: list[GitHubProvider] = []

    def factory(**overrides: Any) -> GitHubProvider:
        fields: dict[str, Any] = {
            "name": "github",
            "token": TOKEN,
            "instance_id": INSTANCE,
            "api_url": f"{sim.url}/api/v3",
            "web_url": sim.url,
            "repos": ("octo/app",),
            "webhook_secret": "s3cret",
        }
        fields.update(overrides)
        observer = fields.pop("observer", None)
        options = GitHubOptions(**fields)
        provider = (
            GitHubProvider(options)
            if observer is None
            else GitHubProvider(options, observer=observer)
        )
        made.append(provider)
        return provider

    return factory


@pytest.fixture
def provider(make_provider: Callable[..., GitHubProvider]) -> GitHubProvider:
    return make_provider()


def request(
    name: str, *, ephemeral: bool = True, labels: tuple[str, ...] = LABELS
) -> RunnerRequest:
    return RunnerRequest(
        name=PREFIX + name, pool="default", labels=labels, run_untagged=False, ephemeral=ephemeral
    )


async def test_pending_jobs_counts_queued_jobs_of_queued_and_in_progress_runs(
    sim: Sim, provider: GitHubProvider
) -> None:
    run_id = int((await sim.post("/_sim/repos/octo/app/runs"))["id"])
    in_run = [await sim.job("octo/app", ("linux", "gpu"), run_id) for _ in range(3)]
    alone = await sim.job("octo/app", ("linux",))
    await sim.job("other/repo", ("linux",))  # not in scope

    # One job of the run starts: the run is in_progress, its other two jobs still queue.
    reg = await provider.register_runner(request("a", labels=(*LABELS, "gpu")))
    agent, _ = Agent.from_jit(sim, reg.credential)
    status, taken = await agent.acquire()
    assert status == 200
    assert taken == in_run[0]

    jobs = await provider.pending_jobs()
    by_id = {j.id: j for j in jobs}
    assert set(by_id) == {str(in_run[1]), str(in_run[2]), str(alone)}
    assert by_id[str(in_run[1])].tags == ("linux", "gpu")
    assert by_id[str(in_run[1])].pipeline == str(run_id)
    assert by_id[str(in_run[1])].scope == "octo/app"
    assert by_id[str(alone)].created_at.tzinfo is not None

    await agent.complete(taken)  # the JIT runner is gone afterwards


async def test_jit_runner_takes_exactly_one_job_then_is_gone(
    sim: Sim, provider: GitHubProvider
) -> None:
    first = await sim.job("octo/app")
    second = await sim.job("octo/app")
    reg = await provider.register_runner(request("jit"))
    assert reg.command == ("/home/runner/run.sh",)
    assert reg.credential_env == "ACTIONS_RUNNER_INPUT_JITCONFIG"
    assert reg.name == PREFIX + "jit"
    assert reg.credential not in " ".join(reg.command)
    agent, config = Agent.from_jit(sim, reg.credential)
    assert str(config["runner_id"]) == reg.forge_runner_id
    assert config["name"] == reg.name

    (activity,) = await provider.runner_activity([reg.forge_runner_id])
    assert activity.exists
    assert not activity.busy

    status, job_id = await agent.acquire()
    assert (status, job_id) == (200, first)
    (activity,) = await provider.runner_activity([reg.forge_runner_id])
    assert activity.busy
    assert activity.online
    await agent.complete(first)

    # One job only: the registration is gone and the agent cannot take another.
    status, _ = await agent.acquire()
    assert status == 401
    (activity,) = await provider.runner_activity([reg.forge_runner_id])
    assert not activity.exists
    assert [j for j in await provider.pending_jobs() if j.id == str(second)]
    assert await provider.list_own_runners() == []
    with pytest.raises(RunnerNotFound):
        await provider.unregister_runner(reg.forge_runner_id)


async def test_reusable_runner_registers_itself_takes_two_jobs_and_is_removed(
    sim: Sim, provider: GitHubProvider
) -> None:
    jobs = [await sim.job("octo/app"), await sim.job("octo/app")]
    reg = await provider.register_runner(request("reuse", ephemeral=False))
    assert reg.forge_runner_id == ""
    assert reg.credential_env == "ACTIONS_RUNNER_INPUT_TOKEN"
    assert reg.command[:2] == ("/bin/sh", "-c")
    url, name, labels = reg.command[-3:]
    assert url == f"{sim.url}/octo/app"
    assert name == reg.name
    assert labels == ",".join(LABELS)
    assert reg.credential not in " ".join(reg.command)

    by_name = f"name:{reg.name}"
    (before,) = await provider.runner_activity([by_name])
    assert not before.exists

    agent = await Agent.register(sim, reg.credential, name, labels, url)
    for expected in jobs:
        status, job_id = await agent.acquire()
        assert (status, job_id) == (200, expected)
        await agent.complete(expected)

    (after,) = await provider.runner_activity([by_name])
    assert after.exists
    assert after.forge_runner_id.isdigit()
    assert not after.busy
    own = await provider.list_own_runners()
    assert [(r.id, r.name) for r in own] == [(after.forge_runner_id, reg.name)]
    assert set(own[0].labels) == set(LABELS)

    await provider.unregister_runner(by_name)
    assert await provider.list_own_runners() == []
    with pytest.raises(RunnerNotFound):
        await provider.unregister_runner(after.forge_runner_id)


async def test_busy_runner_is_never_removed(sim: Sim, provider: GitHubProvider) -> None:
    job_id = await sim.job("octo/app")
    reg = await provider.register_runner(request("busy"))
    agent, _ = Agent.from_jit(sim, reg.credential)
    assert (await agent.acquire())[1] == job_id
    with pytest.raises(RunnerBusy):
        await provider.unregister_runner(reg.forge_runner_id)
    state = await sim.state()
    assert [r["name"] for r in state["runners"]] == [reg.name]
    await agent.complete(job_id)


async def test_unregister_racing_job_assignment_never_strands_a_job(
    sim: Sim, provider: GitHubProvider
) -> None:
    count = 12
    for _ in range(count):
        await sim.job("octo/app")
    regs = [await provider.register_runner(request(f"race{i}")) for i in range(count)]
    agents = [Agent.from_jit(sim, r.credential)[0] for r in regs]

    # Odd runners ask for a job first, even ones are deleted first, every fourth races
    # with no head start at all.
    def head_start(i: int, acquire: bool) -> float:
        if i % 4 == 0:
            return 0.0
        return 0.0 if (i % 2 == 1) == acquire else 0.05

    async def acquire(i: int) -> tuple[int, int | None]:
        await asyncio.sleep(head_start(i, acquire=True))
        return await agents[i].acquire()

    async def unregister(i: int) -> str:
        await asyncio.sleep(head_start(i, acquire=False))
        try:
            await provider.unregister_runner(regs[i].forge_runner_id)
        except RunnerBusy:
            return "busy"
        return "removed"

    outcomes = await asyncio.gather(
        *(acquire(i) for i in range(count)), *(unregister(i) for i in range(count))
    )
    acquired, removed = outcomes[:count], outcomes[count:]
    for (status, job_id), verdict in zip(acquired, removed, strict=True):
        if job_id is not None:
            assert verdict == "busy"  # it had the job before the delete: kept
        else:
            assert status == 401
            assert verdict == "removed"
    assert {"busy", "removed"} <= set(removed)  # both orders really happened
    state = await sim.state()
    live = {r["name"] for r in state["runners"]}
    for job in state["jobs"]:
        if job["status"] == "in_progress":
            assert job["runner_name"] in live
    for agent, (_, job_id) in zip(agents, acquired, strict=True):
        if job_id is not None:
            await agent.complete(job_id)


async def test_more_than_100_jobs_in_one_run_are_all_listed(
    sim: Sim, provider: GitHubProvider
) -> None:
    run_id = int((await sim.post("/_sim/repos/octo/app/runs"))["id"])
    ids = {str(await sim.job("octo/app", ("linux",), run_id)) for _ in range(130)}
    jobs = await provider.pending_jobs()
    assert {j.id for j in jobs} == ids
    assert {j.pipeline for j in jobs} == {str(run_id)}


async def test_idle_polling_costs_no_rate_limit(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    repos = tuple(f"octo/r{i}" for i in range(50))
    for repo in repos:
        await sim.post(f"/_sim/repos/{repo}")
    await sim.job("octo/r7")
    provider = make_provider(repos=repos)
    assert len(await provider.pending_jobs()) == 1
    used_after_first = (await sim.state())["rate_limit_used"]
    assert used_after_first >= 100  # runs?status=queued and in_progress per repo, + jobs
    for _ in range(3):
        assert len(await provider.pending_jobs()) == 1
        assert (await sim.state())["rate_limit_used"] == used_after_first
    health = provider.health()
    assert health.rate_limit_limit == 5000
    assert health.rate_limit_remaining == 5000 - used_after_first
    assert health.poll_interval_s is None


async def test_many_repos_are_paced_under_the_secondary_limit(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    """100 repos cost ~200 requests a poll; at 600/min each repo is polled every >= 20 s."""
    repos = tuple(f"octo/p{i}" for i in range(100))
    for repo in repos:
        await sim.post(f"/_sim/repos/{repo}")
    provider = make_provider(repos=repos, requests_per_minute=600, poll_interval_s=15)
    await provider.pending_jobs()
    sent = (await sim.state())["requests"]
    assert sent <= 100  # the burst: a sixth of the minute's budget
    await provider.pending_jobs()  # right after: only what refilled meanwhile is spent
    assert (await sim.state())["requests"] - sent <= 10
    health = provider.health()
    assert health.poll_interval_s is not None and health.poll_interval_s >= 20
    assert "600 requests/min" in health.note
    few = make_provider(repos=repos[:5], requests_per_minute=600, poll_interval_s=15)
    await few.pending_jobs()
    assert few.health().poll_interval_s is None  # 10 requests a poll need no pacing


async def test_org_scope_lists_org_repositories_and_registers_at_org(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    await sim.post("/_sim/orgs/acme/repos", {"repos": ["one", "two", "three"]})
    a = await sim.job("acme/one")
    b = await sim.job("acme/three")
    provider = make_provider(repos=(), orgs=("acme",))
    assert {j.id for j in await provider.pending_jobs()} == {str(a), str(b)}
    assert {j.scope for j in await provider.pending_jobs()} == {"acme/one", "acme/three"}

    reg = await provider.register_runner(request("org"))
    agent, _ = Agent.from_jit(sim, reg.credential)
    status, job_id = await agent.acquire()
    assert job_id == a  # an org runner serves every repository of the org
    await agent.complete(a)
    reusable = await provider.register_runner(request("org-r", ephemeral=False))
    assert reusable.command[-3] == f"{sim.url}/acme"
    other = await Agent.register(sim, reusable.credential, reusable.name, "self-hosted", "x")
    assert [r.name for r in await provider.list_own_runners()] == [reusable.name]
    await provider.unregister_runner(f"name:{reusable.name}")
    assert other is not None


async def test_list_own_runners_ignores_other_instances(
    sim: Sim, provider: GitHubProvider, make_provider: Callable[..., GitHubProvider]
) -> None:
    foreign = make_provider(instance_id="other")
    theirs = await foreign.register_runner(
        RunnerRequest(
            name=runner_name_prefix("other") + "x",
            pool="p",
            labels=LABELS,
            run_untagged=False,
            ephemeral=True,
        )
    )
    mine = await provider.register_runner(request("mine"))
    assert [r.name for r in await provider.list_own_runners()] == [mine.name]
    with pytest.raises(Exception, match="lacks prefix"):
        await provider.register_runner(
            RunnerRequest(
                name="stranger", pool="p", labels=LABELS, run_untagged=False, ephemeral=True
            )
        )
    await provider.unregister_runner(mine.forge_runner_id)
    await foreign.unregister_runner(theirs.forge_runner_id)


async def test_duplicate_jit_name_is_a_permanent_error(sim: Sim, provider: GitHubProvider) -> None:
    reg = await provider.register_runner(request("dup"))
    with pytest.raises(Exception, match="409"):
        await provider.register_runner(request("dup"))
    await provider.unregister_runner(reg.forge_runner_id)


async def test_observer_sees_every_api_request(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    seen: list[tuple[str, str, int]] = []
    provider = make_provider(observer=lambda f, e, s: seen.append((f, e, s)))
    run_id = int((await sim.post("/_sim/repos/octo/app/runs"))["id"])
    for _ in range(120):
        await sim.job("octo/app", run_id=run_id)
    await provider.pending_jobs()
    await provider.pending_jobs()
    reg = await provider.register_runner(request("obs"))
    await provider.runner_activity([reg.forge_runner_id])
    await provider.unregister_runner(reg.forge_runner_id)
    assert len(seen) == await sim.api_requests()
    endpoints = {e for _, e, _ in seen}
    assert "GET /repos/:owner/:repo/actions/runs" in endpoints
    assert "GET /repos/:owner/:repo/actions/runs/:run_id/jobs" in endpoints
    assert "POST /repos/:owner/:repo/actions/runners/generate-jitconfig" in endpoints
    assert "DELETE /repos/:owner/:repo/actions/runners/:runner_id" in endpoints
    assert {s for _, _, s in seen} >= {200, 304, 201, 204}
    assert provider.health().requests_total == len(seen)


async def test_connection_error_is_transient_and_observed_as_status_0() -> None:
    seen: list[int] = []
    options = GitHubOptions(
        name="github",
        token=TOKEN,
        instance_id=INSTANCE,
        api_url="http://127.0.0.1:9/api/v3",  # discard port: nothing listens
        repos=("octo/app",),
        request_timeout_s=2,
    )
    provider = GitHubProvider(options, observer=lambda _f, _e, s: seen.append(s))
    with pytest.raises(TransientProviderError):
        await provider.pending_jobs()
    assert seen
    assert set(seen) == {0}
    await provider.aclose()


async def test_bad_token_is_an_auth_error(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    provider = make_provider(token="wrong")
    with pytest.raises(ProviderAuthError):
        await provider.pending_jobs()
    with pytest.raises(ProviderAuthError):
        await provider.register_runner(request("x"))


@pytest.mark.parametrize("status", [429, 403])
async def test_rate_limit_with_retry_after_is_raised_quickly(
    sim: Sim, provider: GitHubProvider, status: int
) -> None:
    await sim.job("octo/app")
    await sim.post("/_sim/faults", {"status": status, "seconds": 30, "retry_after": 42})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await provider.pending_jobs()
    assert caught.value.retry_after == pytest.approx(42, abs=1)
    # Blocked: the next calls raise at once, without spending requests.
    before = await sim.api_requests()
    with pytest.raises(RateLimited):
        await provider.pending_jobs()
    with pytest.raises(RateLimited):
        await provider.register_runner(request("blocked"))
    assert await sim.api_requests() == before
    assert time.monotonic() - started < 3
    assert "rate limited" in provider.health().note
    assert provider.health().rate_limit_remaining is not None  # faulted answers carry them too


async def test_exhausted_budget_raises_rate_limited_until_reset(
    sim: Sim, provider: GitHubProvider
) -> None:
    await sim.post("/_sim/rate-limit", {"remaining": 0, "reset_in": 120})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await provider.pending_jobs()
    assert 60 < (caught.value.retry_after or 0) <= 121
    assert time.monotonic() - started < 3


async def test_server_error_storm_is_transient_and_quick(
    sim: Sim, provider: GitHubProvider
) -> None:
    await sim.post("/_sim/faults", {"status": 503, "seconds": 30})
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(TransientProviderError) as caught:
            await provider.pending_jobs()
        assert not isinstance(caught.value, RateLimited)
    with pytest.raises(TransientProviderError):
        await provider.register_runner(request("storm"))
    assert time.monotonic() - started < 3
    await sim.post("/_sim/faults", {"status": 0, "seconds": 0})
    assert await provider.pending_jobs() == []


async def test_low_budget_stretches_the_poll_interval(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    job_id = await sim.job("octo/app")
    await sim.post("/_sim/rate-limit", {"remaining": 100, "reset_in": 1800})
    provider = make_provider(low_rate_limit=500)
    assert [j.id for j in await provider.pending_jobs()] == [str(job_id)]
    health = provider.health()
    assert health.poll_interval_s is not None
    assert health.poll_interval_s > 30
    assert "stretched" in health.note
    assert health.rate_limit_remaining is not None
    assert health.rate_limit_remaining < 100
    before = await sim.api_requests()
    await sim.job("octo/app")  # not seen until the stretched interval has passed
    assert [j.id for j in await provider.pending_jobs()] == [str(job_id)]
    assert await sim.api_requests() == before


# ---------------------------------------------------------------------------------------
# Webhooks: the simulator delivers to a receiver that hands the delivery to the provider.


@pytest.fixture
async def receiver(
    provider: GitHubProvider,
) -> AsyncIterator[tuple[str, asyncio.Queue[tuple[int, Any]]]]:
    deliveries: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            result = await provider.handle_webhook(dict(request.headers), body)
        except WebhookRejected as exc:
            await deliveries.put((exc.status, None))
            return web.Response(status=exc.status)
        await deliveries.put((200, result))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with RunningSim(app) as running:
        yield f"{running.url}/hook", deliveries


async def test_webhook_deliveries_from_the_sim_are_verified_and_parsed(
    sim: Sim, provider: GitHubProvider, receiver: tuple[str, asyncio.Queue[tuple[int, Any]]]
) -> None:
    url, deliveries = receiver
    await sim.post("/_sim/webhook-target", {"url": url, "secret": "s3cret"})
    job_id = await sim.job("octo/app", ("linux", "big"))
    status, result = await asyncio.wait_for(deliveries.get(), 5)
    assert status == 200
    assert result.event == "workflow_job.queued"
    assert result.nudge
    assert [(j.id, j.tags, j.scope) for j in result.jobs] == [
        (str(job_id), ("linux", "big"), "octo/app")
    ]

    reg = await provider.register_runner(request("hooked", labels=(*LABELS, "big")))
    agent, _ = Agent.from_jit(sim, reg.credential)
    await agent.acquire()
    status, result = await asyncio.wait_for(deliveries.get(), 5)
    assert result.event == "workflow_job.in_progress"
    assert result.finished_job_ids == (str(job_id),)
    await agent.complete(job_id)
    status, result = await asyncio.wait_for(deliveries.get(), 5)
    assert result.event == "workflow_job.completed"

    await sim.post("/_sim/webhook-target", {"url": url, "secret": "wrong"})
    await sim.job("octo/app")
    status, result = await asyncio.wait_for(deliveries.get(), 5)
    assert status == 401


def _signed(body: bytes, secret: str = "s3cret") -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_webhook_ping_malformed_and_unsigned(provider: GitHubProvider) -> None:
    ping = json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode()
    result = await provider.handle_webhook(
        {"X-GitHub-Event": "ping", "X-Hub-Signature-256": _signed(ping)}, ping
    )
    assert (result.event, result.nudge) == ("ping", False)

    garbage = b"{not json"
    with pytest.raises(WebhookRejected) as caught:
        await provider.handle_webhook(
            {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _signed(garbage)}, garbage
        )
    assert caught.value.status == 400
    wrong_types = json.dumps(
        {"action": "queued", "workflow_job": {"id": "x"}, "repository": {"full_name": "octo/app"}}
    ).encode()
    with pytest.raises(WebhookRejected) as caught:
        await provider.handle_webhook(
            {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _signed(wrong_types)},
            wrong_types,
        )
    assert caught.value.status == 400
    with pytest.raises(WebhookRejected) as caught:
        await provider.handle_webhook({"X-GitHub-Event": "ping"}, ping)
    assert caught.value.status == 401


async def test_failed_webhook_delivery_is_ignored(sim: Sim) -> None:
    await sim.post("/_sim/webhook-target", {"url": "http://127.0.0.1:9/hook", "secret": "s"})
    job_id = await sim.job("octo/app")
    await asyncio.sleep(0.2)  # the delivery fails in the background; the sim carries on
    assert any(j["id"] == job_id for j in (await sim.state())["jobs"])


async def test_standalone_entry_point_serves_the_api() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.forgesim.github",
        "--port",
        "0",
        "--token",
        "T",
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"forgesim github listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{match.group(1)}/api/v3/rate_limit", headers={"Authorization": "Bearer T"}
            ) as resp,
        ):
            assert resp.status == 200
            assert resp.headers["x-ratelimit-limit"] == "5000"
    finally:
        proc.terminate()
        await proc.wait()


# -- issue 11 fault drills on the forgesim's fault book ----------------------------------


@pytest.mark.parametrize("shape", ["pat", "not_found"])
async def test_a_repository_refusing_the_token_is_skipped_not_the_forge(
    sim: Sim, make_provider: Callable[..., GitHubProvider], shape: str
) -> None:
    """Issue 11.4: one repository that refuses the token must not blind the forge."""
    await sim.post("/_sim/repos/octo/locked")
    served = await sim.job("octo/app")
    await sim.job("octo/locked")
    await sim.post("/_sim/faults", {"kind": "forbidden", "repo": "octo/locked", "shape": shape})
    provider = make_provider(repos=("octo/app", "octo/locked"))
    assert [j.id for j in await provider.pending_jobs()] == [str(served)]
    assert set(provider.health().scope_errors) == {"octo/locked"}
    assert await provider.list_own_runners() == []  # the forge is not paused


async def test_abuse_detection_wording_is_a_rate_limit_not_an_auth_failure(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    """Issue 11.5a: the old wording without Retry-After used to pause the forge as auth."""
    await sim.post("/_sim/faults", {"kind": "rate_limit", "shape": "abuse", "count": 1})
    provider = make_provider()
    with pytest.raises(RateLimited) as caught:
        await provider.list_own_runners()
    assert caught.value.retry_after == 60  # GitHub: wait at least a minute, then longer


async def test_the_budget_keeps_polls_under_a_secondary_limit_that_counts_304s(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    """Issue 11.5b: 304s are free only on the primary limit; pacing must count them.

    Old code: every poll of five idle repositories sent ten free 304s, so 30 polls in a
    minute met the secondary limit at 60 requests/min."""
    for i in range(5):
        await sim.post(f"/_sim/repos/octo/idle{i}")
    await sim.post("/_sim/faults", {"kind": "secondary_limit", "per_minute": 60, "seconds": 120})
    provider = make_provider(repos=tuple(f"octo/idle{i}" for i in range(5)), requests_per_minute=60)
    for _ in range(30):  # a 2 s reconcile loop, squeezed: the budget is what paces it
        await provider.pending_jobs()
    stats = await sim.state()
    assert stats["rate_limit_used"] <= 60
    assert provider.health().requests_total <= 60


async def test_a_deployment_approval_job_is_not_demand(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    """Issue 11.6: it cannot run until approved; a runner for it would only idle."""
    await sim.post(
        "/_sim/repos/octo/app/jobs",
        {"labels": ["linux"], "duration": 0, "status": "waiting", "environment": "prod"},
    )
    assert await make_provider().pending_jobs() == []


async def test_github_cross_host_redirect_never_gets_the_token(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    await sim.post("/_sim/faults", {"kind": "redirect", "seconds": 30})
    with pytest.raises(PermanentProviderError, match="refused a redirect"):
        await make_provider().list_own_runners()
    async with sim.http.get(sim.url + "/_sim/stats") as resp:
        assert (await resp.json())["trap"]["hits"] == []


async def test_a_trickling_github_cannot_hold_a_call_past_the_deadline(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    await sim.post("/_sim/faults", {"kind": "trickle", "interval": 0.5, "seconds": 5, "count": 1})
    with pytest.raises(TransientProviderError, match="deadline|complete answer"):
        await make_provider(call_deadline_s=1.0).list_own_runners()


async def test_a_huge_backlog_is_read_only_up_to_the_cap_and_counted(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    """Issue 12.8: never read a repository's whole backlog; say it was capped."""
    run_id = int((await sim.post("/_sim/repos/octo/app/runs"))["id"])
    for _ in range(130):
        await sim.job("octo/app", ("linux",), run_id)
    provider = make_provider(max_jobs_per_scope=50)
    assert len(await provider.pending_jobs()) == 50
    assert provider.health().jobs_capped == {"octo/app": 50}


# --- several repositories, no organisation: runners are repository-level ------------------


def scoped(name: str, scope: str, *, ephemeral: bool = True) -> RunnerRequest:
    return RunnerRequest(
        name=PREFIX + name,
        pool="default",
        labels=LABELS,
        run_untagged=False,
        ephemeral=ephemeral,
        scope=scope,
    )


async def test_a_job_in_the_second_repository_gets_a_runner_registered_there(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    # The bug: every runner was registered on the FIRST repository, and a repo-level
    # runner only serves its own repository, so a job in octo/lib was never taken.
    await sim.post("/_sim/repos/octo/lib")
    provider = make_provider(repos=("octo/app", "octo/lib"))
    job = await sim.job("octo/lib")
    (pending,) = await provider.pending_jobs()
    assert pending.scope == "octo/lib"

    reg = await provider.register_runner(scoped("lib", pending.scope))
    jit_posts = [
        r.path for r in sim.running.app[SIM_KEY].requests if r.path.endswith("/generate-jitconfig")
    ]
    assert jit_posts == ["/api/v3/repos/octo/lib/actions/runners/generate-jitconfig"]
    agent, _ = Agent.from_jit(sim, reg.credential)
    (idle,) = await provider.runner_activity([reg.forge_runner_id])
    assert idle.exists and not idle.busy  # looked up in octo/lib, not octo/app
    status, taken = await agent.acquire()
    assert (status, taken) == (200, job)
    (busy,) = await provider.runner_activity([reg.forge_runner_id])
    assert busy.busy
    assert [r.name for r in await provider.list_own_runners()] == [reg.name]
    await agent.complete(job)
    assert await provider.pending_jobs() == []


async def test_runners_of_every_repository_are_found_removed_and_swept(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    await sim.post("/_sim/repos/octo/lib")
    provider = make_provider(repos=("octo/app", "octo/lib"))
    app = await provider.register_runner(scoped("app", "octo/app"))
    lib = await provider.register_runner(scoped("lib", "octo/lib"))
    reuse = await provider.register_runner(scoped("reuse", "octo/lib", ephemeral=False))
    url, name, labels = reuse.command[-3:]
    assert url == f"{sim.url}/octo/lib"  # config.sh registers it in the job's repository
    await Agent.register(sim, reuse.credential, name, labels, url)

    # A fresh provider (a restarted daemon) has no memory of where each runner lives.
    restarted = make_provider(repos=("octo/app", "octo/lib"))
    activity = await restarted.runner_activity(
        [app.forge_runner_id, lib.forge_runner_id, f"name:{reuse.name}"]
    )
    assert [a.exists for a in activity] == [True, True, True]
    assert activity[2].forge_runner_id.isdigit()
    own = await restarted.list_own_runners()
    assert {r.name for r in own} == {app.name, lib.name, reuse.name}

    await restarted.unregister_runner(lib.forge_runner_id)
    await restarted.unregister_runner(f"name:{reuse.name}")
    await provider.unregister_runner(app.forge_runner_id)
    assert await restarted.list_own_runners() == []
    with pytest.raises(RunnerNotFound):
        await make_provider(repos=("octo/app", "octo/lib")).unregister_runner(lib.forge_runner_id)


async def test_a_scope_outside_the_configured_repositories_is_refused(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    provider = make_provider(repos=("octo/app",))
    with pytest.raises(PermanentProviderError, match="not a configured repository"):
        await provider.register_runner(scoped("x", "evil/repo"))


async def test_a_locked_repository_does_not_blind_activity_of_runners_elsewhere(
    sim: Sim, make_provider: Callable[..., GitHubProvider]
) -> None:
    await sim.post("/_sim/repos/octo/locked")
    await sim.post("/_sim/faults", {"kind": "forbidden", "repo": "octo/locked"})
    provider = make_provider(repos=("octo/app", "octo/locked"))
    reg = await provider.register_runner(scoped("app", "octo/app"))
    restarted = make_provider(repos=("octo/app", "octo/locked"))  # knows no runner yet
    (found,) = await restarted.runner_activity([reg.forge_runner_id])
    assert found.exists
    assert [r.name for r in await restarted.list_own_runners()] == [reg.name]
    await make_provider(repos=("octo/app", "octo/locked")).unregister_runner(reg.forge_runner_id)
    # Gone, but it might have lived in the repository that refused: no guess.
    with pytest.raises(AccessDenied):
        await make_provider(repos=("octo/app", "octo/locked")).runner_activity(
            [reg.forge_runner_id]
        )
