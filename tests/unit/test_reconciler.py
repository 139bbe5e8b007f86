"""Reconciler scenarios over the in-memory fakes (no network, no Docker)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.config import Settings
from orchestrator.models import RunnerState, WaitReason
from orchestrator.state import Journal
from providers.errors import TransientProviderError
from tests.conftest import Clock
from tests.fakes import FakeForge
from tests.unit.harness import GITHUB_ONLY, POOLS, Harness


@pytest.fixture
def harness(make_settings: Callable[..., Settings], clock: Clock) -> Harness:
    return Harness(make_settings(pools=POOLS, max_runners=5), clock)


async def test_tagged_job_gets_one_runner_in_its_pool_then_is_retired_after_cooldown(
    harness: Harness,
) -> None:
    world = harness.world
    job = world.add_job("gitlab", ["docker", "amd64"], created_at=harness.clock.now)
    summary = await harness.reconciler.run_once()
    assert summary.created == 1
    (runner,) = harness.runners(RunnerState.IDLE)
    assert runner.pool == "amd64" and runner.platform == "linux/amd64"
    container = world.container_of(runner.forge_runner_id)
    assert container is not None and container.status == "running"
    assert container.spec.credential.startswith("glrt-")  # only the short-lived credential
    assert "glpat" not in repr(container.spec)

    # A second reconcile does not spawn again for the same job.
    assert (await harness.reconciler.run_once()).created == 0

    world.take_job(runner.forge_runner_id, job)
    harness.clock.advance(30)
    await harness.reconciler.run_once()
    assert harness.journal.get(runner.id).state is RunnerState.BUSY

    world.finish_job(job, now=harness.clock.now)
    harness.clock.advance(30)
    await harness.reconciler.run_once()
    assert harness.journal.get(runner.id).state is RunnerState.IDLE

    harness.clock.advance(61)
    await harness.reconciler.run_once()
    assert harness.journal.get(runner.id).state is RunnerState.REMOVED
    assert world.runners == {}
    assert world.live_containers() == []
    # Unregister happened before the container was stopped.
    order = [e.split()[0] for e in world.events]
    assert order.index("unregister") < order.index("stop")
    assert (
        harness.metrics.registry.get_sample_value(
            "runner_orchestrator_job_pickup_latency_seconds_count", {"pool": "amd64"}
        )
        == 1
    )


async def test_busy_runner_is_never_retired_even_long_past_cooldown(harness: Harness) -> None:
    world = harness.world
    job = world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    world.take_job(runner.forge_runner_id, job)
    for _ in range(5):
        harness.clock.advance(600)
        await harness.reconciler.run_once()
        assert harness.journal.get(runner.id).state is RunnerState.BUSY
    assert world.container_of(runner.forge_runner_id) is not None


async def test_job_taken_between_plan_and_retire_keeps_the_runner(harness: Harness) -> None:
    """The busy re-check right before unregistering catches a last-moment job."""
    world = harness.world
    world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    world.jobs.clear()
    harness.clock.advance(120)
    late = world.add_job("gitlab", ["docker", "arm64"])  # different pool: not a reason to keep
    world.jobs[late].status = "running"
    world.runners[runner.forge_runner_id].busy = True  # took a job since the last look
    # The periodic view is fresh (so only the re-check before unregistering can see it).
    harness.reconciler.lifecycle.activity.mark_fresh(runner.id)
    await harness.reconciler.run_once()
    assert harness.journal.get(runner.id).state is RunnerState.BUSY
    assert runner.forge_runner_id in world.runners


async def test_ephemeral_container_exit_cleans_up_forge_and_container(harness: Harness) -> None:
    world = harness.world
    job = world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    container = world.container_of(runner.forge_runner_id)
    assert container is not None
    world.take_job(runner.forge_runner_id, job)
    world.finish_job(job)
    harness.runtime.exit(container.id, 0)
    assert harness.nudges >= 1  # the exit event wakes the loop at once
    await harness.reconciler.run_once()
    final = harness.journal.get(runner.id)
    assert final.state is RunnerState.REMOVED
    assert final.exit_code == 0 and "job done" in final.logs_tail
    assert world.runners == {} and world.live_containers() == []


async def test_forge_outage_pauses_only_that_forge_and_recovers(harness: Harness) -> None:
    world = harness.world
    world.add_job("gitlab", ["docker", "amd64"])
    harness.forge.fail = TransientProviderError("503 from forge")
    for _ in range(3):
        summary = await harness.reconciler.run_once()
        assert summary.created == 0
        harness.clock.advance(20)
    snap = harness.reconciler.snapshot
    assert snap.result == "degraded"
    assert snap.forges[0].paused and "503" in snap.forges[0].error
    harness.forge.fail = None
    harness.clock.advance(20)
    assert (await harness.reconciler.run_once()).created == 1
    assert harness.reconciler.snapshot.result == "ok"


async def test_unservable_job_waits_with_a_reason_and_spawns_nothing(harness: Harness) -> None:
    harness.world.add_job("gitlab", ["windows"])
    summary = await harness.reconciler.run_once()
    assert summary.created == 0
    status = harness.reconciler.snapshot.status_json()
    (waiting,) = status["waiting_jobs"]
    assert waiting["reason"] == WaitReason.NO_MATCHING_POOL.value
    assert "windows" in waiting["detail"]


async def test_spawn_failure_is_a_runner_error_and_backs_off(harness: Harness) -> None:
    harness.world.add_job("gitlab", ["docker", "amd64"])
    harness.runtime.fail_start = "could not select device driver nvidia"
    summary = await harness.reconciler.run_once()
    assert summary.failed == 1
    # The failed runner is cleaned up; the pool backs off instead of storming.
    await harness.reconciler.run_once()
    assert harness.world.runners == {}
    snap = harness.reconciler.snapshot.status_json()
    assert snap["waiting_jobs"][0]["reason"] == "pool_unavailable"
    assert "nvidia" in snap["waiting_jobs"][0]["detail"]


async def test_orphan_container_without_a_row_is_removed(harness: Harness) -> None:
    world = harness.world
    world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    # Forget the row behind the daemon's back: the container is now an orphan.
    harness.journal._db.execute("DELETE FROM runners")  # noqa: SLF001
    await harness.reconciler.run_once()
    assert world.live_containers() == [] or all(
        c.spec.runner_id != runner.id for c in world.live_containers()
    )
    assert runner.forge_runner_id not in world.runners


async def test_forge_gc_removes_only_this_instances_runners(harness: Harness) -> None:
    from tests.fakes import FakeForgeRunner

    world = harness.world
    world.runners["900"] = FakeForgeRunner("900", "ro-test-amd64-leaked", "gitlab", (), "c")
    world.runners["901"] = FakeForgeRunner("901", "someone-elses-runner", "gitlab", (), "c")
    world.runners["902"] = FakeForgeRunner("902", "ro-other-amd64-x", "gitlab", (), "c")
    assert await harness.reconciler.gc_forges() == 1
    assert set(world.runners) == {"901", "902"}


async def test_restart_recovers_half_done_work(make_settings, clock) -> None:
    """A crash between registering and starting is rolled back on the next start."""
    settings = make_settings(pools=POOLS)
    first = Harness(settings, clock)
    first.world.add_job("gitlab", ["docker", "amd64"])
    await first.reconciler.run_once()
    (running,) = first.runners()
    # Simulate a crash mid-creation: a row journalled as registering, forge runner made.
    first.journal.create(
        runner_id="half",
        name="ro-test-amd64-half",
        pool="amd64",
        forge="gitlab",
        platform="linux/amd64",
        now=clock.now,
    )
    first.journal.transition("half", RunnerState.REGISTERING, now=clock.now)
    from tests.fakes import FakeForgeRunner

    first.world.runners["777"] = FakeForgeRunner("777", "ro-test-amd64-half", "gitlab", (), "c")
    first.journal.close()

    second = Harness(settings, clock, world=first.world, journal=Journal(settings.journal_path))
    await second.reconciler.recover()
    assert second.journal.get("half").state is RunnerState.FAILED
    assert second.journal.get(running.id).state is RunnerState.IDLE  # adopted as is
    await second.reconciler.run_once()
    await second.reconciler.gc_forges()
    assert second.journal.get("half").state is RunnerState.REMOVED
    assert "777" not in second.world.runners
    assert second.world.container_of(running.forge_runner_id) is not None


async def test_drain_removes_everything(harness: Harness) -> None:
    harness.world.add_job("gitlab", ["docker", "amd64"])
    harness.world.add_job("gitlab", ["docker", "arm64"])
    await harness.reconciler.run_once()
    assert len(harness.runners()) == 2
    await harness.reconciler.drain(timeout_s=5)
    assert harness.runners() == []
    assert harness.world.runners == {} and harness.world.live_containers() == []


async def test_manual_scale_and_delete(harness: Harness) -> None:
    harness.reconciler.request_scale("amd64", 2)
    assert (await harness.reconciler.run_once()).created == 2
    first = harness.runners()[0]
    removed = await harness.reconciler.retire_now(first.id)
    assert removed.state is RunnerState.REMOVED
    harness.reconciler.request_scale("amd64", -5)
    await harness.reconciler.run_once()
    assert harness.runners() == []


async def test_a_job_taken_while_we_look_is_not_served_twice(harness: Harness) -> None:
    """The forge lists job X as pending, then a free runner takes X before we look at
    the runner. Counting X as demand AND the runner as busy would spawn a duplicate."""
    world = harness.world
    first = world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    world.take_job(runner.forge_runner_id, first)
    world.finish_job(first)
    harness.clock.advance(120)  # the runner's busy/idle view is stale again
    second = world.add_job("gitlab", ["docker", "amd64"])
    listed = FakeForge.pending_jobs

    async def list_then_take(self: FakeForge):  # type: ignore[no-untyped-def]
        jobs = await listed(self)
        if second in world.jobs and world.jobs[second].status == "pending":
            world.take_job(runner.forge_runner_id, second)
        return jobs

    FakeForge.pending_jobs = list_then_take  # type: ignore[method-assign]
    try:
        summary = await harness.reconciler.run_once()
    finally:
        FakeForge.pending_jobs = listed  # type: ignore[method-assign]
    assert summary.created == 0, "job already taken by the existing runner"


async def test_long_running_daemon_forgets_what_it_no_longer_needs(harness: Harness) -> None:
    """Credentials leave the redactor when their runner is gone; old removed rows are pruned."""
    from orchestrator import logging as olog

    harness.world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    credential = harness.world.runners[runner.forge_runner_id].credential
    assert credential in olog._known  # noqa: SLF001 - redaction is active while it lives
    harness.world.jobs.clear()
    harness.clock.advance(120)
    await harness.reconciler.run_once()
    assert harness.journal.get(runner.id).state is RunnerState.REMOVED
    assert credential not in olog._known  # noqa: SLF001
    harness.clock.advance(8 * 24 * 3600)
    await harness.reconciler.gc_forges()
    assert harness.journal.recent() == []


async def test_drain_deadline_removes_a_busy_gitlab_runner_and_its_registration(
    harness: Harness,
) -> None:
    job = harness.world.add_job("gitlab", ["docker", "amd64"])
    await harness.reconciler.run_once()
    (runner,) = harness.runners()
    harness.world.take_job(runner.forge_runner_id, job)
    await harness.reconciler.drain(timeout_s=0)  # deadline already passed: force
    assert harness.runners() == []
    assert harness.world.runners == {} and harness.world.live_containers() == []


async def test_forced_retire_of_a_busy_github_runner_finishes_once_the_forge_lets_go(
    make_settings: Callable[..., Settings], clock: Clock
) -> None:
    h = Harness(make_settings(**GITHUB_ONLY), clock, forge="github")
    world = h.world
    job = world.add_job("github", ["self-hosted", "docker"])
    await h.reconciler.run_once()
    (runner,) = h.runners()
    world.take_job(runner.forge_runner_id, job)
    await h.reconciler.drain(timeout_s=0)
    # GitHub refuses to drop a busy runner: its container is gone, the row waits.
    assert world.live_containers() == []
    assert h.journal.get(runner.id).state is RunnerState.DRAINING
    world.finish_job(job)  # the forge notices the runner is gone and not busy
    await h.reconciler.run_once()  # the retry is not due yet: the forge is not asked
    assert h.journal.get(runner.id).state is RunnerState.DRAINING
    h.clock.advance(11)
    await h.reconciler.run_once()
    assert h.journal.get(runner.id).state is RunnerState.REMOVED
    assert world.runners == {}
