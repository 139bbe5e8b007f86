"""Issue 15, GitHub idle cost: an idle organisation costs about half the requests it did,
and a job queued in an idle repository is still seen at the next round.

Before: every repository cost two listings a round (runs queued, runs in progress), idle
or not: 100 repositories = about 22,000 requests an idle hour, all counted by GitHub's
secondary limit (304s included). Now a repository whose newest runs are all completed is
asked only that (one request), and polled in full when that answer shows a run that is
not completed, or every five minutes as a safety net. Requests are counted by the
simulator (``/_sim/stats``); time is a fake clock, so nothing here is timed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from providers.base import GitHubOptions
from providers.github import GitHubProvider
from tests.forgesim.common import RunningSim
from tests.forgesim.github import create_app

TOKEN = "ghp_simtoken"
REPOS = 20
POLL_INTERVAL_S = 15.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Org:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def job_polls(self) -> int:
        async with self.http.get(self.url + "/_sim/stats") as resp:
            return int((await resp.json())["classes"]["job_poll"]["count"])


@pytest.fixture
async def org() -> AsyncIterator[Org]:
    async with RunningSim(create_app(TOKEN)) as running, aiohttp.ClientSession() as http:
        org = Org(running.url, http)
        await org.post("/_sim/orgs/idle/repos", {"repos": [f"r{i}" for i in range(REPOS)]})
        yield org


async def test_an_idle_org_costs_half_and_a_new_job_is_still_seen_next_round(org: Org) -> None:
    clock = FakeClock()
    provider = GitHubProvider(
        GitHubOptions(
            name="github",
            token=TOKEN,
            instance_id="it1",
            api_url=f"{org.url}/api/v3",
            web_url=org.url,
            orgs=("idle",),
        ),
        clock=clock,
    )

    async def round_cost() -> int:
        before = await org.job_polls()
        clock.now += POLL_INTERVAL_S
        await provider.pending_jobs()
        return await org.job_polls() - before

    first = await round_cost()
    assert first >= 2 * REPOS  # the first look at each repository is a full poll
    full_round = 2 * REPOS  # what every round cost before
    assert await round_cost() == REPOS  # idle: one request per repository
    assert provider.health().poll_cost == REPOS

    # Over ten idle minutes (safety-net full polls included): about half of before.
    spent = sum([await round_cost() for _ in range(40)])
    assert spent <= 0.55 * 40 * full_round, spent

    # A job queued in an idle repository is seen at the very next round.
    job = int((await org.post("/_sim/repos/idle/r7/jobs", {"labels": ["linux"]}))["id"])
    clock.now += POLL_INTERVAL_S
    jobs = await provider.pending_jobs()
    assert [j.id for j in jobs] == [str(job)]
    assert provider.health().poll_cost == REPOS + 1  # r7 is busy now: polled in full
    await provider.aclose()
