"""The forge tracker under faults (issue 11.3): independent polls, clamped waits, stale views.

Before: every forge was polled in one ``gather`` inside the reconcile, so a forge that
trickled froze every reconcile (and the Docker side) as long as it trickled, with /ready
200; ``Retry-After: 1e15`` raised OverflowError in every reconcile and ``86400`` paused a
forge for a day.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta

import pytest

from orchestrator.config import Settings
from orchestrator.forges import ForgeLimits
from orchestrator.metrics import Metrics
from orchestrator.models import RunnerState
from orchestrator.reconciler import Reconciler
from orchestrator.state import Journal
from providers.base import PendingJob, WebhookResult
from providers.errors import RateLimited
from tests.conftest import Clock
from tests.fakes import FakeForge, FakeRuntime, FakeWorld
from tests.unit.harness import TWO_FORGES

LIMITS = ForgeLimits(poll_interval_s=15, call_timeout_s=0.3, poll_grace_s=0.05)


class HangingForge(FakeForge):
    """A forge that accepts the connection and then never finishes its answer."""

    def __init__(self, world: FakeWorld, **kw: object) -> None:
        super().__init__(world, **kw)  # type: ignore[arg-type]
        self.hang = True
        self.release = asyncio.Event()

    async def pending_jobs(self) -> Sequence[PendingJob]:
        if self.hang:
            await self.release.wait()
        return await super().pending_jobs()


class TwoForges:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.world = FakeWorld()
        self.clock = clock
        self.gitlab = HangingForge(self.world, name="gitlab", kind="gitlab")
        self.github = FakeForge(self.world, name="github", kind="github")
        self.runtime = FakeRuntime(self.world)
        self.journal = Journal(settings.journal_path)
        self.reconciler = Reconciler(
            settings=settings,
            journal=self.journal,
            providers={"gitlab": self.gitlab, "github": self.github},
            runtime=self.runtime,
            metrics=Metrics(),
            instance_id="test",
            clock=clock,
            limits=LIMITS,
        )

    def forge(self, name: str) -> dict[str, object]:
        forges = self.reconciler.snapshot.status_json()["forges"]
        return next(f for f in forges if f["name"] == name)


@pytest.fixture
async def two(make_settings: Callable[..., Settings], clock: Clock) -> AsyncIterator[TwoForges]:
    two = TwoForges(make_settings(**TWO_FORGES), clock)
    yield two
    await two.reconciler.aclose()


async def test_a_forge_that_never_answers_delays_neither_the_other_forge_nor_docker(
    two: TwoForges,
) -> None:
    two.world.add_job("gitlab", ["docker"])
    two.world.add_job("github", ["self-hosted", "docker"])
    summary = await two.reconciler.run_once()  # returns after the short grace
    assert summary.created == 1
    (runner,) = two.journal.active()
    assert runner.pool == "gh" and runner.state is RunnerState.IDLE
    assert summary.result == "ok"  # too early to call the hanging forge stale
    await asyncio.sleep(LIMITS.call_timeout_s + 0.1)  # its deadline passes in the background
    two.clock.advance(15)
    summary = await two.reconciler.run_once()
    assert two.forge("gitlab")["paused"] and "no answer within" in str(two.forge("gitlab")["error"])
    assert not two.forge("github")["paused"]
    assert summary.result == "degraded"


async def test_a_forge_stuck_for_several_intervals_is_stale_not_ok(two: TwoForges) -> None:
    for _ in range(5):
        await two.reconciler.run_once()
        two.clock.advance(15)
    await two.reconciler.run_once()
    gitlab = two.forge("gitlab")
    assert gitlab["stale"] == "no successful poll yet"
    assert two.reconciler.snapshot.result == "degraded"
    assert two.forge("github")["stale"] == ""
    # It recovers as soon as it answers again.
    two.gitlab.hang = False
    two.gitlab.release.set()
    two.clock.advance(3600)
    await two.reconciler.run_once()
    assert two.forge("gitlab")["stale"] == "" and not two.forge("gitlab")["paused"]
    assert two.reconciler.snapshot.result == "ok"


@pytest.mark.parametrize(
    ("retry_after", "paused_for"),
    [(86400.0, 900.0), (1e15, 900.0), (math.inf, 900.0), (math.nan, 15.0), (0.0, 1.0), (30, 30)],
)
async def test_every_wait_a_forge_asks_for_is_clamped(
    two: TwoForges, retry_after: float, paused_for: float
) -> None:
    two.gitlab.hang = False
    two.gitlab.fail = RateLimited("429", retry_after=retry_after)
    two.world.add_job("github", ["self-hosted", "docker"])
    summary = await two.reconciler.run_once()
    state = two.reconciler.forges.forges["gitlab"]
    assert state.retry_at == two.clock.now + timedelta(seconds=paused_for)
    assert summary.created == 1  # the healthy forge is served in the same reconcile
    summary = await two.reconciler.run_once()  # and the next one does not crash
    assert summary.error == ""


async def test_webhook_hints_are_one_bounded_layer_superseded_by_a_poll_that_read_them(
    two: TwoForges,
) -> None:
    tracker = two.reconciler.forges
    now = two.clock.now
    many = tuple(PendingJob(str(i), "group/project", ("docker",), now) for i in range(3000))
    tracker.on_webhook("github", WebhookResult("workflow_job.queued", True, jobs=many))
    assert len(tracker.forges["github"].hints.jobs) == tracker.limits.hint_max
    # A poll that did not read the hints' scope (refused, skipped for budget, cached)
    # is no proof: the hints stay. (Dropping them here lost the e2e webhook's job.)
    elsewhere = PendingJob("x1", "other/repo", ("docker",), now)
    tracker.on_webhook("github", WebhookResult("workflow_job.queued", True, jobs=(elsewhere,)))
    two.clock.advance(1)
    await tracker.poll()
    assert "github:x1" in tracker.forges["github"].hints.jobs
    # A later poll that read "group/project" (it lists another job there) supersedes them.
    two.world.add_job("github", ["docker"])
    two.clock.advance(15)  # deliveries arrive: the poll is a safety net, due after 15 s
    await tracker.poll()
    hints = tracker.forges["github"].hints.jobs
    assert list(hints) == ["github:x1"]
    two.clock.advance(tracker.limits.hint_ttl_s + 1)
    assert [j for j in tracker.demand() if j.forge == "github" and j.id == "x1"] == []  # aged out


async def test_a_bug_in_a_poll_is_a_bug_not_a_forge_pause(two: TwoForges) -> None:
    two.gitlab.hang = False

    async def broken() -> Sequence[PendingJob]:
        raise KeyError("id")

    two.gitlab.pending_jobs = broken  # type: ignore[method-assign]
    summary = await two.reconciler.run_once()
    assert summary.result == "error" and "KeyError" in summary.error
    assert not two.forge("gitlab")["paused"]


async def test_ready_is_503_while_a_forge_view_is_stale(
    make_settings: Callable[..., Settings],
) -> None:
    """A forge that never answers: the daemon keeps reconciling (the other side works),
    but /ready says why it is not ready instead of 200 with an old view."""
    import aiohttp

    from orchestrator.app import Daemon

    world = FakeWorld()
    forge = HangingForge(world, name="gitlab", kind="gitlab")
    settings = make_settings(poll_interval=1.0, forge_call_timeout=30)

    def providers(s: Settings, instance: str, observer: object) -> dict[str, FakeForge]:
        return {"gitlab": forge}

    daemon = Daemon(settings, providers=providers, runtime=lambda s, i: FakeRuntime(world))  # type: ignore[arg-type]
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{daemon.port}/ready"
            for _ in range(400):  # stale after 3 intervals of 1 s (the config floor)
                async with session.get(url) as response:
                    body = await response.json()
                if any("stale" in r for r in body["reasons"]):
                    break
                await asyncio.sleep(0.05)
            assert response.status == 503
            assert any("forge gitlab stale: no successful poll yet" in r for r in body["reasons"])
    finally:
        forge.release.set()
        await daemon.stop()
