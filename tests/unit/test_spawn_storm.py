"""Issue 11.1: a pool whose runner containers exit at once must not become a spawn storm.

Before: backoff existed only for register/start failures and was cleared by every
successful ``docker start``; a runner that started and exited at once was respawned every
reconcile (387 registrations in 90 s for one pending job in the measured run).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.config import Settings
from orchestrator.models import RunnerState
from tests.conftest import Clock
from tests.unit.harness import POOLS, Harness


@pytest.fixture
def harness(make_settings: Callable[..., Settings], clock: Clock) -> Harness:
    return Harness(make_settings(pools=POOLS, max_runners=5, poll_interval=15), clock)


def registrations(h: Harness) -> int:
    return sum(1 for e in h.world.events if e.startswith("register"))


async def test_a_pool_whose_runners_exit_at_once_backs_off_and_shows_why(harness: Harness) -> None:
    h = harness
    h.runtime.exit_at_start["amd64"] = 1  # the runner command fails right away
    h.world.add_job("gitlab", ["docker", "amd64"])
    for _ in range(40):  # ten minutes of reconciles every 15 s
        await h.reconciler.run_once()
        h.clock.advance(15)
    # 2+4+8+...: at most ~8 spawns in 10 minutes, where every reconcile used to spawn one.
    assert registrations(h) <= 9, h.world.events
    await h.reconciler.run_once()
    assert h.world.live_containers() == [] or all(
        c.status == "exited" for c in h.world.live_containers()
    )
    status = h.reconciler.snapshot.status_json()
    (pool,) = [p for p in status["pools"] if p["name"] == "amd64"]
    failures = h.metrics.registry.get_sample_value(
        "runner_orchestrator_runner_failures_total", {"pool": "amd64", "stage": "early_exit"}
    )
    assert failures is not None and failures >= 3


async def test_the_broken_pool_is_pool_unavailable_with_exit_code_and_log_tail(
    harness: Harness,
) -> None:
    h = harness
    h.runtime.exit_at_start["amd64"] = 3
    h.world.add_job("gitlab", ["docker", "amd64"])
    await h.reconciler.run_once()  # spawns; the container exits at once
    await h.reconciler.run_once()  # settles: early exit -> backoff
    status = h.reconciler.snapshot.status_json()
    (waiting,) = status["waiting_jobs"]
    assert waiting["reason"] == "pool_unavailable"
    assert "exited 3" in waiting["detail"] and "could not reach the forge" in waiting["detail"]
    (pool,) = [p for p in status["pools"] if p["name"] == "amd64"]
    assert "exited 3" in pool["unavailable"]
    assert status["waiting_by_reason"] == {"pool_unavailable": 1}


async def test_other_pools_are_unaffected_by_a_broken_one(harness: Harness) -> None:
    h = harness
    h.runtime.exit_at_start["amd64"] = 1
    h.world.add_job("gitlab", ["docker", "amd64"])
    arm = h.world.add_job("gitlab", ["docker", "arm64"])
    for _ in range(4):
        await h.reconciler.run_once()
        h.clock.advance(15)
    arm_runners = [r for r in h.runners() if r.pool == "arm64"]
    assert len(arm_runners) == 1 and arm_runners[0].state is RunnerState.IDLE
    h.world.take_job(arm_runners[0].forge_runner_id, arm)
    await h.reconciler.run_once()
    assert h.journal.get(arm_runners[0].id).state is RunnerState.BUSY


async def test_after_the_backoff_one_probe_starts_not_a_burst(harness: Harness) -> None:
    h = harness
    h.runtime.exit_at_start["amd64"] = 1
    for _ in range(3):
        h.world.add_job("gitlab", ["docker", "amd64"])
    await h.reconciler.run_once()  # three runners spawn, all exit at once
    await h.reconciler.run_once()  # settled: three early exits
    before = registrations(h)
    h.clock.advance(3600)  # long past any backoff
    await h.reconciler.run_once()
    assert registrations(h) == before + 1  # one probe while on probation


async def test_a_runner_that_proves_itself_clears_the_backoff(harness: Harness) -> None:
    h = harness
    h.runtime.exit_at_start["amd64"] = 1
    h.world.add_job("gitlab", ["docker", "amd64"])
    await h.reconciler.run_once()
    await h.reconciler.run_once()
    assert h.reconciler.lifecycle.spawn.streak("amd64") is not None
    del h.runtime.exit_at_start["amd64"]  # fixed (e.g. the forge is reachable again)
    h.clock.advance(3600)
    await h.reconciler.run_once()  # the probe starts and stays up
    (probe,) = [r for r in h.runners() if r.state is RunnerState.IDLE]
    # Merely starting does not clear the streak...
    assert h.reconciler.lifecycle.spawn.streak("amd64") is not None
    job = next(iter(h.world.jobs))
    h.world.take_job(probe.forge_runner_id, job)
    h.clock.advance(15)
    await h.reconciler.run_once()
    # ...taking a job does.
    assert h.reconciler.lifecycle.spawn.streak("amd64") is None


async def test_a_normal_ephemeral_exit_is_not_a_spawn_failure(harness: Harness) -> None:
    h = harness
    job = h.world.add_job("gitlab", ["docker", "amd64"])
    await h.reconciler.run_once()
    (runner,) = h.runners()
    container = h.world.container_of(runner.forge_runner_id)
    assert container is not None
    h.world.take_job(runner.forge_runner_id, job)
    h.world.finish_job(job)
    h.runtime.exit(container.id, 0)
    await h.reconciler.run_once()
    assert h.reconciler.lifecycle.spawn.streak("amd64") is None
    assert h.reconciler.snapshot.status_json()["pools"][0]["unavailable"] == ""
