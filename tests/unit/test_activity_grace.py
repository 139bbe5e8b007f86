"""Busy/idle checks under faults (issue 11.3): one forge's slow runner endpoints never hold
the reconcile, and a runner whose activity is unknown is never retired.

Before: the reconcile awaited every forge's activity check, in turn, before any forge's
job poll, so a forge trickling on its runner endpoints delayed every other forge's spawns
(and the Docker side) for up to ``FORGE_CALL_TIMEOUT`` in every reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from orchestrator.config import Settings
from orchestrator.forges import ForgeLimits
from orchestrator.metrics import Metrics
from orchestrator.models import RunnerState
from orchestrator.reconciler import Reconciler
from orchestrator.state import Journal
from providers.base import RunnerActivity, RunnerRef
from tests.conftest import Clock
from tests.fakes import FakeForge, FakeRuntime, FakeWorld
from tests.unit.harness import TWO_FORGES

# A long deadline: a reconcile that waited for the hanging check would not return before
# the test released it (or would find the check answered/timed out, not still pending).
LIMITS = ForgeLimits(poll_interval_s=15, call_timeout_s=600, poll_grace_s=0.05)


class TricklingRunnerChecks(FakeForge):
    """A forge whose job list answers but whose runner endpoints hang until released."""

    def __init__(self, world: FakeWorld, **kw: object) -> None:
        super().__init__(world, **kw)  # type: ignore[arg-type]
        self.hang = False
        self.release = asyncio.Event()
        self.activity_calls = 0

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        self.activity_calls += 1
        if self.hang:
            await self.release.wait()
        return await super().runner_activity(runners)


class TwoForges:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.world = FakeWorld()
        self.clock = clock
        self.sick = TricklingRunnerChecks(self.world, name="gitlab", kind="gitlab")
        self.well = FakeForge(self.world, name="github", kind="github")
        self.journal = Journal(settings.journal_path)
        self.reconciler = Reconciler(
            settings=settings,
            journal=self.journal,
            providers={"gitlab": self.sick, "github": self.well},
            runtime=FakeRuntime(self.world),
            metrics=Metrics(),
            instance_id="test",
            clock=clock,
            limits=LIMITS,
        )

    def runner_of(self, forge: str) -> str:
        (runner,) = (r for r in self.journal.active() if r.forge == forge)
        return runner.id


@pytest.fixture
async def two(make_settings: Callable[..., Settings], clock: Clock) -> AsyncIterator[TwoForges]:
    two = TwoForges(make_settings(**TWO_FORGES), clock)
    yield two
    two.sick.release.set()
    await two.reconciler.aclose()


async def _an_idle_gitlab_runner_then_its_checks_hang(two: TwoForges) -> str:
    job = two.world.add_job("gitlab", ["docker"])
    assert (await two.reconciler.run_once()).created == 1
    runner_id = two.runner_of("gitlab")
    two.world.jobs.pop(job)  # nothing waits any more: the runner is only idle capacity
    two.sick.hang = True
    two.sick.activity_calls = 0
    return runner_id


async def test_a_hanging_activity_check_on_one_forge_does_not_delay_the_other_forges_spawn(
    two: TwoForges,
) -> None:
    await _an_idle_gitlab_runner_then_its_checks_hang(two)
    two.clock.advance(15)  # the gitlab runner's view is stale: it is asked about
    two.world.add_job("github", ["self-hosted", "docker"])
    summary = await two.reconciler.run_once()  # returns after the short grace
    assert summary.created == 1 and two.runner_of("github")
    assert two.sick.activity_calls == 1
    assert two.reconciler.lifecycle.activity.pending("gitlab")  # still unanswered


async def test_a_runner_is_not_retired_while_its_forge_activity_is_unknown_and_the_late_answer_lands_next_round(  # noqa: E501
    two: TwoForges,
) -> None:
    runner_id = await _an_idle_gitlab_runner_then_its_checks_hang(two)
    two.clock.advance(120)  # past the cooldown: the planner wants it retired
    await two.reconciler.run_once()
    runner = two.journal.get(runner_id)
    assert runner.state is RunnerState.IDLE  # kept: its forge did not say it is idle
    assert runner.forge_runner_id in two.world.runners  # not unregistered
    # Meanwhile it took a job; the forge still hangs; no second check piles up.
    two.world.runners[runner.forge_runner_id].busy = True
    two.clock.advance(120)
    await two.reconciler.run_once()
    assert two.journal.get(runner_id).state is RunnerState.IDLE
    assert runner.forge_runner_id in two.world.runners
    assert two.sick.activity_calls == 1
    # The forge answers late; the next reconcile applies that answer before planning.
    two.sick.release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    two.clock.advance(1)
    await two.reconciler.run_once()
    assert two.journal.get(runner_id).state is RunnerState.BUSY
    assert not two.reconciler.lifecycle.activity.pending("gitlab")
    assert runner.forge_runner_id in two.world.runners
