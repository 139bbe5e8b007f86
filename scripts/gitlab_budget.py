"""GitLab requests per minute by class with busy runners, default budget (issue 11.2).

Runs the real GitLab adapter against the in-process GitLab forgesim on a clock the
script moves: N runners registered and busy, one project, a reconcile every INTERVAL
seconds (job poll + activity of every runner, the forge sweep every 5 minutes), a new job
added every 30 s. Prints one row per (interval, runners): requests per minute by class
and the worst number of rounds a new job waited to be seen (0 = the same round).

    PYTHONPATH=. python3 scripts/gitlab_budget.py
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import aiohttp

from providers.base import GitLabOptions, RunnerRequest, runner_name_prefix
from providers.errors import ProviderError
from providers.gitlab import GitLabProvider
from tests.forgesim.common import RunningSim
from tests.forgesim.gitlab import create_app

TOKEN = "glpat-measure"
MINUTES = 2.0
SWEEP_S = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _no_sleep(_seconds: float) -> None:
    """Budget waits happen on the script's clock, never for real."""


def _class(endpoint: str) -> str:
    if endpoint == "GET /projects/:id/jobs":
        return "job_poll"
    if endpoint.startswith("GET /runners"):
        return "activity+sweep"
    return endpoint


async def measure(runners: int, interval: float) -> str:
    async with RunningSim(create_app(TOKEN, admin=True)) as sim, aiohttp.ClientSession() as http:
        url = sim.url
        for _ in range(runners):
            async with http.post(f"{url}/_sim/projects/1/jobs", json={"tags": ["docker"]}) as r:
                await r.json()
        clock = Clock()
        seen: Counter[str] = Counter()
        provider = GitLabProvider(
            GitLabOptions(name="gl", url=url, token=TOKEN, instance_id="m", projects=("1",)),
            observer=lambda _f, endpoint, _s: seen.update([endpoint]),
            clock=clock,
            sleep=_no_sleep,
        )
        ids: list[str] = []
        for i in range(runners):
            request = RunnerRequest(
                name=f"{runner_name_prefix('m')}r{i}",
                pool="p",
                labels=("docker",),
                run_untagged=False,
                ephemeral=True,
            )
            while True:
                try:
                    reg = await provider.register_runner(request)
                    break
                except ProviderError:
                    clock.now += 1  # registrations wait for budget like the daemon's would
            body = {"token": reg.credential, "system_id": "s", "info": {"name": "a"}}
            async with http.post(f"{url}/api/v4/jobs/request", json=body) as r:
                assert r.status == 201
            ids.append(reg.forge_runner_id)
        clock.now += 120
        await provider.runner_activity(ids)  # first sight of every runner: warm-up
        clock.now += 60
        seen.clear()
        worst, new_job, added_at = 0, "", 0
        for rnd in range(int(MINUTES * 60 / interval)):
            if not new_job and rnd % max(1, int(30 / interval)) == 0:
                async with http.post(f"{url}/_sim/projects/1/jobs", json={"tags": ["x"]}) as r:
                    new_job, added_at = str((await r.json())["id"]), rnd
            if new_job in {j.id for j in await provider.pending_jobs()}:
                worst, new_job = max(worst, rnd - added_at), ""
            with contextlib.suppress(ProviderError):  # skipped for budget: last view stands
                await provider.runner_activity(ids)
            if rnd % int(SWEEP_S / interval) == 0:
                await provider.list_own_runners()
            clock.now += interval
        by_class: Counter[str] = Counter()
        for endpoint, count in seen.items():
            by_class[_class(endpoint)] += count / MINUTES
        for rid in ids:
            await provider.unregister_runner(rid, force=True)
            clock.now += 1
        await provider.aclose()
        classes = "  ".join(f"{k}={v:.1f}/min" for k, v in sorted(by_class.items()))
        return (
            f"interval={interval:>4}s runners={runners:3d}  {classes}  "
            f"total={sum(by_class.values()):.1f}/min  new job seen after {worst} round(s)"
        )


async def main() -> None:
    for interval in (15.0, 2.0):
        for runners in (10, 50, 100):
            print(await measure(runners, interval), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
