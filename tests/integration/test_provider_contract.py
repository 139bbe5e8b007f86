"""One contract for every :class:`providers.base.Provider`: the fake and both adapters.

The same scenarios run over ``FakeForge`` (what the orchestrator's unit tests trust),
the GitLab adapter against the GitLab forgesim and the GitHub adapter against the GitHub
forgesim, so a fake that drifts from the real adapters fails here, not in production.
Each harness knows only how to make the world move (add a job, let a runner take and
finish it); every assertion is shared.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp
import pytest

from providers.base import (
    ForgeKind,
    GitHubOptions,
    GitLabOptions,
    Provider,
    ProviderHealth,
    Registration,
    RunnerRef,
    RunnerRequest,
    runner_name_prefix,
)
from providers.errors import RunnerBusy, RunnerNotFound, WebhookRejected
from providers.github import GitHubProvider
from providers.gitlab import GitLabProvider
from tests.fakes import FakeForge, FakeWorld
from tests.forgesim.common import RunningSim
from tests.forgesim.github import create_app as github_app
from tests.forgesim.gitlab import create_app as gitlab_app

INSTANCE = "contract"
LABELS = ("self-hosted", "linux")
TOKEN = "contract-token"


class Harness(Protocol):
    provider: Provider

    async def add_job(self) -> str: ...

    async def take(self, registration: Registration) -> Any: ...

    async def finish(self, registration: Registration, taken: Any) -> None: ...


class FakeHarness:
    def __init__(self) -> None:
        self.world = FakeWorld()
        self.provider = FakeForge(self.world, name="fake", kind="github", instance_id=INSTANCE)

    async def add_job(self) -> str:
        return self.world.add_job("fake", ("linux",))

    async def take(self, registration: Registration) -> Any:
        job = next(j.id for j in self.world.jobs.values() if j.status == "pending")
        self.world.take_job(registration.forge_runner_id, job)
        return job

    async def finish(self, registration: Registration, taken: Any) -> None:
        self.world.finish_job(taken)


class GitLabHarness:
    def __init__(self, sim: RunningSim, http: aiohttp.ClientSession) -> None:
        self.sim, self.http = sim, http
        self.provider = GitLabProvider(
            GitLabOptions(
                name="gitlab",
                url=sim.url,
                token=TOKEN,
                instance_id=INSTANCE,
                projects=("1",),
                webhook_secret="s3cret",
            )
        )

    async def add_job(self) -> str:
        async with self.http.post(
            f"{self.sim.url}/_sim/projects/1/jobs", json={"tags": ["linux"], "duration": 1}
        ) as resp:
            return str((await resp.json())["id"])

    async def take(self, registration: Registration) -> Any:
        body = {"token": registration.credential, "system_id": "s_c", "info": {"name": "c"}}
        async with self.http.post(f"{self.sim.url}/api/v4/jobs/request", json=body) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()

    async def finish(self, registration: Registration, taken: Any) -> None:
        async with self.http.put(
            f"{self.sim.url}/api/v4/jobs/{taken['id']}",
            json={"token": taken["token"], "state": "success"},
        ) as resp:
            assert resp.status < 300


class GitHubHarness:
    def __init__(self, sim: RunningSim, http: aiohttp.ClientSession) -> None:
        self.sim, self.http = sim, http
        self.provider = GitHubProvider(
            GitHubOptions(
                name="github",
                token=TOKEN,
                instance_id=INSTANCE,
                api_url=f"{sim.url}/api/v3",
                web_url=sim.url,
                repos=("octo/app",),
                webhook_secret="s3cret",
            )
        )

    async def setup(self) -> None:
        async with self.http.post(f"{self.sim.url}/_sim/repos/octo/app", json={}) as resp:
            assert resp.status == 200

    async def add_job(self) -> str:
        async with self.http.post(
            f"{self.sim.url}/_sim/repos/octo/app/jobs", json={"labels": ["linux"], "duration": 0}
        ) as resp:
            return str((await resp.json())["id"])

    def _auth(self, registration: Registration) -> Mapping[str, str]:
        secret = json.loads(base64.b64decode(registration.credential))["token"]
        return {"Authorization": f"RunnerToken {secret}"}

    async def take(self, registration: Registration) -> Any:
        async with self.http.post(
            f"{self.sim.url}/_runner/acquire", headers=self._auth(registration)
        ) as resp:
            assert resp.status == 200, await resp.text()
            return int((await resp.json())["job_id"])

    async def finish(self, registration: Registration, taken: Any) -> None:
        async with self.http.post(
            f"{self.sim.url}/_runner/jobs/{taken}/complete",
            headers=self._auth(registration),
            json={"conclusion": "success"},
        ) as resp:
            assert resp.status == 200


@pytest.fixture(params=["fake", "gitlab", "github"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield FakeHarness()
        return
    app = gitlab_app(TOKEN, admin=True) if request.param == "gitlab" else github_app(TOKEN)
    async with RunningSim(app) as sim, aiohttp.ClientSession() as http:
        made: GitLabHarness | GitHubHarness
        if request.param == "gitlab":
            made = GitLabHarness(sim, http)
        else:
            made = GitHubHarness(sim, http)
            await made.setup()
        yield made
        await made.provider.aclose()


def runner_request(name: str) -> RunnerRequest:
    return RunnerRequest(
        name=runner_name_prefix(INSTANCE) + name,
        pool="p",
        labels=LABELS,
        run_untagged=False,
        ephemeral=True,
    )


async def test_it_is_a_provider_with_a_kind_and_a_cheap_health(harness: Harness) -> None:
    provider = harness.provider
    assert isinstance(provider, Provider)
    assert isinstance(provider.kind, ForgeKind)
    health = provider.health()
    assert isinstance(health, ProviderHealth)
    assert isinstance(health.scope_errors, Mapping)


async def test_a_queued_job_is_pending_with_its_tags(harness: Harness) -> None:
    job_id = await harness.add_job()
    jobs = {j.id: j for j in await harness.provider.pending_jobs()}
    assert job_id in jobs
    assert "linux" in jobs[job_id].tags
    assert jobs[job_id].created_at.tzinfo is not None


async def test_a_runner_lives_registers_works_and_goes(harness: Harness) -> None:
    provider = harness.provider
    await harness.add_job()
    reg = await provider.register_runner(runner_request("life"))
    assert reg.forge_runner_id and reg.name == runner_name_prefix(INSTANCE) + "life"
    assert reg.credential and all(reg.credential not in part for part in reg.command)
    ref = RunnerRef(reg.forge_runner_id)

    idle_by_ref, idle_by_text = await provider.runner_activity([ref, reg.forge_runner_id])
    assert (idle_by_ref.exists, idle_by_ref.busy) == (True, False)
    assert idle_by_text.forge_runner_id == reg.forge_runner_id
    assert reg.name in {r.name for r in await provider.list_own_runners()}

    taken = await harness.take(reg)
    (busy,) = await provider.runner_activity([ref])
    assert busy.busy
    with pytest.raises(RunnerBusy):  # never delete a runner while it runs a job
        await provider.unregister_runner(ref)

    await harness.finish(reg, taken)
    with contextlib.suppress(RunnerNotFound):  # an ephemeral runner may remove itself
        await provider.unregister_runner(ref)
    assert reg.name not in {r.name for r in await provider.list_own_runners()}
    with pytest.raises(RunnerNotFound):
        await provider.unregister_runner(ref)
    (gone,) = await provider.runner_activity([ref])
    assert gone.exists is False


async def test_an_unknown_runner_does_not_exist(harness: Harness) -> None:
    (unknown,) = await harness.provider.runner_activity([RunnerRef("987654")])
    assert unknown.exists is False


async def test_an_unsigned_webhook_is_rejected_with_a_4xx(harness: Harness) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await harness.provider.handle_webhook({}, b"{}")
    assert 400 <= caught.value.status < 500
