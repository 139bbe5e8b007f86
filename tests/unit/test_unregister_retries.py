"""Issue 11.7: hopeless unregistrations are retried with backoff, shown, and swept.

Before: a GitHub runner whose container was killed mid-job stayed ``draining`` with its
DELETE retried every reconcile (101 tries in 2 min), and during a token outage every
reconcile sent another unregister (81 x 401 in 60 s).
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.config import Settings
from orchestrator.models import RunnerState
from providers.errors import ProviderAuthError
from tests.conftest import Clock
from tests.unit.harness import GITHUB_ONLY, POOLS, Harness


def github_harness(make_settings: Callable[..., Settings], clock: Clock) -> Harness:
    return Harness(make_settings(**GITHUB_ONLY, poll_interval=2), clock, forge="github")


async def test_busy_refusal_after_the_container_was_killed_is_retried_with_backoff(
    make_settings: Callable[..., Settings], clock: Clock
) -> None:
    h = github_harness(make_settings, clock)
    job = h.world.add_job("github", ["self-hosted", "docker"])
    await h.reconciler.run_once()
    (runner,) = h.runners()
    h.world.take_job(runner.forge_runner_id, job)
    container = h.world.container_of(runner.forge_runner_id)
    assert container is not None
    h.runtime.exit(container.id, 137)  # killed by hand mid-job; GitHub still thinks busy
    for _ in range(60):  # two minutes of 2 s reconciles
        await h.reconciler.run_once()
        h.clock.advance(2)
    deletes = h.forge.calls.count("unregister_runner")
    assert deletes <= 8, deletes  # was one (or two) per reconcile: ~120
    assert h.journal.get(runner.id).state is RunnerState.DRAINING
    (orphan,) = h.reconciler.snapshot.status_json()["orphaned_registrations"]
    assert orphan["runner"] == runner.id and orphan["forge"] == "github"
    assert "unregister pending" in orphan["reason"] and orphan["attempts"] >= 2

    h.world.finish_job(job)  # GitHub lets go of the runner at last
    await h.reconciler.gc_forges()  # the sweep finishes it without waiting for the backoff
    assert h.journal.get(runner.id).state is RunnerState.REMOVED
    assert h.world.runners == {}
    assert h.reconciler.snapshot.status_json()["orphaned_registrations"] == []


async def test_a_token_outage_pauses_unregistration_instead_of_hammering_401s(
    make_settings: Callable[..., Settings], clock: Clock
) -> None:
    h = Harness(make_settings(pools=POOLS, max_runners=5, poll_interval=2), clock)
    h.world.add_job("gitlab", ["docker", "amd64"])
    await h.reconciler.run_once()
    (runner,) = h.runners()
    container = h.world.container_of(runner.forge_runner_id)
    assert container is not None
    h.world.jobs.clear()
    h.forge.fail = ProviderAuthError("401 Unauthorized")
    h.runtime.exit(container.id, 0)
    calls_before = len(h.forge.calls)
    for _ in range(30):  # 60 s of reconciles
        await h.reconciler.run_once()
        h.clock.advance(2)
    unregisters = h.forge.calls[calls_before:].count("unregister_runner")
    assert unregisters <= 2, unregisters  # was one per reconcile
    assert h.reconciler.snapshot.forges[0].paused
    h.forge.fail = None
    h.clock.advance(120)
    for _ in range(3):
        await h.reconciler.run_once()
        h.clock.advance(30)
    assert h.journal.get(runner.id).state is RunnerState.REMOVED
    assert h.world.runners == {}
