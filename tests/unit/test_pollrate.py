"""How often each forge is polled (issue 15): derived from its budget, fast after activity,
a safety net while webhooks arrive, never slower than POLL_INTERVAL.

Before: every forge was polled once per reconcile, every POLL_INTERVAL (15 s), whatever
its budget allowed; a job waited a median of 6 s (GitLab) / 10 s (GitHub) to be seen
without webhooks, and a forge whose webhooks arrived was polled as often as one without.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import pollrate
from orchestrator.forges import ForgeLimits, ForgeTracker
from orchestrator.metrics import Metrics
from providers.base import PendingJob, ProviderHealth, WebhookResult
from tests.conftest import Clock
from tests.fakes import FakeForge, FakeWorld


@pytest.mark.parametrize(
    ("cost", "per_minute", "share", "expected"),
    [
        (1, 300, 0.25, 1.5),  # GitLab GraphQL, up to 100 projects: the floor
        (10, 300, 0.5, 4.0),  # GitLab REST, 10 projects, after activity
        (10, 300, 1 / 3, 6.0),  # ... idle
        (11, 600, 0.5, 2.2),  # GitHub, 1 busy + 9 quiet repositories
        (100, 600, 1 / 3, 30.0),  # GitHub, 100 quiet: the budget cannot pay for 15 s
        (0, 600, 0.5, 1.5),  # nothing to poll
    ],
)
def test_the_interval_follows_the_budget(
    cost: int, per_minute: int, share: float, expected: float
) -> None:
    got = pollrate.derive_interval(cost, per_minute, share=share, floor_s=1.5, ceiling_s=15.0)
    assert got == pytest.approx(expected)


@given(
    cost=st.integers(min_value=0, max_value=100_000),
    per_minute=st.integers(min_value=1, max_value=100_000),
    share=st.sampled_from([pollrate.FAST_SHARE, pollrate.IDLE_SHARE]),
    floor_s=st.floats(min_value=0.1, max_value=10),
    ceiling_s=st.floats(min_value=1, max_value=3600),
)
def test_the_budget_holds_and_the_bounds_hold(
    cost: int, per_minute: int, share: float, floor_s: float, ceiling_s: float
) -> None:
    interval = pollrate.derive_interval(
        cost, per_minute, share=share, floor_s=floor_s, ceiling_s=ceiling_s
    )
    assert interval >= min(floor_s, ceiling_s)  # never a busy loop
    assert cost * 60 / interval <= per_minute * share * (1 + 1e-9)  # the budget holds
    needed = cost * 60 / (per_minute * share)
    # POLL_INTERVAL is the upper bound, unless the budget cannot pay for it at all
    assert interval <= ceiling_s or interval == pytest.approx(needed)


@pytest.mark.parametrize(
    ("activity", "webhook", "mode"),
    [
        (None, None, "idle: every 6.0 s"),
        (12.0, None, "fast (activity 12 s ago): every 4.0 s"),
        (400.0, None, "idle: every 6.0 s"),
        (12.0, 30.0, "webhook safety-net (last delivery 30 s ago)"),
        (None, 3600.0, "idle: every 6.0 s"),  # deliveries stopped: poll on the budget again
    ],
)
def test_the_mode_says_why(activity: float | None, webhook: float | None, mode: str) -> None:
    chosen = pollrate.plan(
        poll_cost=10,
        budget_per_minute=300,
        ceiling_s=15,
        activity_age_s=activity,
        webhook_age_s=webhook,
    )
    assert chosen.mode == mode


# -- the tracker, on a fake clock -------------------------------------------------------------


class BudgetedForge(FakeForge):
    """A fake forge that says what a poll round costs, like the real providers."""

    def __init__(self, world: FakeWorld, cost: int, per_minute: int) -> None:
        super().__init__(world, name="gitlab", kind="gitlab")
        self.cost, self.per_minute, self.polls = cost, per_minute, 0

    async def pending_jobs(self) -> Sequence[PendingJob]:
        self.polls += 1
        return await super().pending_jobs()

    def health(self) -> ProviderHealth:
        return ProviderHealth(poll_cost=self.cost, budget_per_minute=self.per_minute)


def _tracker(clock: Clock, forge: FakeForge, nudges: list[int]) -> ForgeTracker:
    return ForgeTracker(
        {forge.name: forge},
        limits=ForgeLimits(poll_interval_s=15),
        metrics=Metrics(),
        clock=clock,
        nudge=lambda: nudges.append(1),
    )


async def _run(tracker: ForgeTracker, clock: Clock, seconds: int) -> None:
    """The scheduler's tick, once a second for ``seconds`` (the fake clock moves)."""
    for _ in range(seconds):
        tracker.tick()
        for _ in range(10):  # let a started poll finish (the fake forge answers at once)
            await asyncio.sleep(0)
        clock.advance(1)


async def test_an_idle_forge_is_polled_as_its_budget_allows_and_faster_after_a_job(
    clock: Clock,
) -> None:
    world = FakeWorld()
    forge = BudgetedForge(world, cost=10, per_minute=300)  # 10 projects over REST
    nudges: list[int] = []
    tracker = _tracker(clock, forge, nudges)
    await _run(tracker, clock, 60)
    assert forge.polls == 10  # idle: every 6 s (a third of 300/min), not every 15 s
    assert tracker.statuses()[0].poll_mode == "idle: every 6.0 s"
    assert nudges == []  # nothing changed: no reconcile woken
    world.add_job("gitlab", ["docker"])
    await _run(tracker, clock, 6)
    assert nudges == [1]  # the poll that saw the job wakes a reconcile
    forge.polls = 0
    await _run(tracker, clock, 60)
    assert forge.polls == 15  # fast: every 4 s (half the budget) while activity is recent
    assert tracker.statuses()[0].poll_mode.startswith("fast (activity")
    await tracker.aclose()


async def test_while_webhooks_arrive_polling_is_a_safety_net(clock: Clock) -> None:
    world = FakeWorld()
    forge = BudgetedForge(world, cost=1, per_minute=300)
    tracker = _tracker(clock, forge, [])
    await _run(tracker, clock, 1)
    tracker.on_webhook("gitlab", WebhookResult("ping", nudge=False))
    forge.polls = 0
    await _run(tracker, clock, 60)
    assert forge.polls == 4  # every POLL_INTERVAL, not every 1.5 s
    assert tracker.statuses()[0].poll_mode.startswith("webhook safety-net")
    clock.advance(pollrate.WEBHOOK_FRESH_S)  # deliveries stopped: back on the budget
    forge.polls = 0
    await _run(tracker, clock, 15)
    assert forge.polls >= 5
    await tracker.aclose()


async def test_a_forge_that_does_not_say_its_cost_is_polled_every_reconcile(
    clock: Clock,
) -> None:
    forge = FakeForge(FakeWorld(), name="gitlab", kind="gitlab")
    tracker = _tracker(clock, forge, [])
    await tracker.poll()
    await tracker.poll()
    assert forge.calls.count("pending_jobs") == 2
    await tracker.aclose()


def test_a_budget_that_cannot_pay_for_poll_interval_wins_and_says_so() -> None:
    chosen = pollrate.plan(
        poll_cost=100, budget_per_minute=600, ceiling_s=15, activity_age_s=None, webhook_age_s=None
    )
    assert chosen.interval_s == pytest.approx(30.0)  # 200 requests/min: half of before
    assert "budget-bound" in chosen.mode


def test_an_unknown_cost_keeps_poll_interval() -> None:
    chosen = pollrate.plan(
        poll_cost=None, budget_per_minute=None, ceiling_s=15, activity_age_s=0, webhook_age_s=None
    )
    assert chosen.interval_s == 15


class PartlyServedForge(BudgetedForge):
    """Answers every poll, but one scope's answer is from long ago (budget rounds)."""

    def __init__(self, world: FakeWorld) -> None:
        super().__init__(world, cost=1, per_minute=300)
        self.oldest = 10.0

    def health(self) -> ProviderHealth:
        return ProviderHealth(poll_cost=1, budget_per_minute=300, demand_age_s=self.oldest)


async def test_a_scope_left_unread_for_long_makes_the_view_stale(clock: Clock) -> None:
    forge = PartlyServedForge(FakeWorld())
    tracker = _tracker(clock, forge, [])
    await tracker.poll()
    assert tracker.degraded() == []
    forge.oldest = 3 * 15 + 1  # three POLL_INTERVALs and more
    assert tracker.degraded() == ["gitlab"]
    assert "stalest project/repository was read 46s ago" in tracker.stale(tracker.forges["gitlab"])
    await tracker.aclose()


async def test_a_reconcile_repolls_a_forge_with_waiting_jobs_even_if_not_due(
    clock: Clock,
) -> None:
    """A runner took the job and finished it between two scheduled polls; the reconcile
    nudged by its container's exit must not spawn again from the old view."""
    world = FakeWorld()
    forge = BudgetedForge(world, cost=10, per_minute=300)
    tracker = _tracker(clock, forge, [])
    job = world.add_job("gitlab", ["docker"])
    await tracker.poll()
    assert [j.id for j in tracker.demand()] == [job]
    world.jobs.pop(job)  # done at the forge
    await tracker.poll()  # not due by the schedule, but the view lists a job
    assert tracker.demand() == []
    polls = forge.polls
    await tracker.poll()  # nothing waits: the schedule decides again
    assert forge.polls == polls
    await tracker.aclose()
