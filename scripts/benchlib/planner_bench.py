"""The ``planner`` section: :func:`orchestrator.planner.compute_plan` on a generated fleet
against the per-job matching it replaced (``tests/reference_planner.py``), in-process."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.models import ForgeKind, Job, PoolSpec, Runner, RunnerState
from orchestrator.planner import compute_plan
from tests.reference_planner import reference_plan

PLAN_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def planner_world(jobs: int, runners: int = 1000, pools: int = 20) -> dict[str, Any]:
    """A deterministic fleet: half GitLab, half GitHub pools with mixed platforms, runners
    in every state, and jobs drawing from 60 distinct tag sets (as a real queue does: a
    few job kinds, many jobs)."""
    rng = random.Random(15)
    specs = []
    for i in range(pools):
        github = i % 2 == 1
        specs.append(
            PoolSpec(
                name=f"pool{i}",
                forge="gh" if github else "gl",
                forge_kind=ForgeKind.GITHUB if github else ForgeKind.GITLAB,
                labels=frozenset({"docker", f"team{i % 7}"} | ({"gpu"} if i % 5 == 0 else set())),
                platform=("linux/amd64", "linux/arm64", "auto")[i % 3],
                run_untagged=i % 4 == 0,
                max_runners=500,
                min_idle=i % 2,
                max_idle=4,
                cooldown_s=300,
                ephemeral=True,
            )
        )
    vocab = ["docker", "gpu", "amd64", "arm64", "self-hosted", "linux", "X64"]
    vocab += [f"team{i}" for i in range(7)]
    tag_sets = [frozenset(rng.sample(vocab, rng.randint(0, 3))) for _ in range(60)]
    states = [s for s in RunnerState if s is not RunnerState.REMOVED]
    return {
        "jobs": [
            Job(
                forge=rng.choice(("gl", "gh")),
                id=str(i),
                scope=f"p{i % 50}",
                tags=rng.choice(tag_sets),
                created_at=PLAN_NOW - timedelta(seconds=rng.uniform(0, 3600)),
            )
            for i in range(jobs)
        ],
        "runners": [
            Runner(
                id=f"r{i}",
                name=f"r{i}",
                pool=f"pool{i % pools}",
                forge="gl" if i % pools % 2 == 0 else "gh",
                state=rng.choice(states),
                since=PLAN_NOW - timedelta(seconds=rng.uniform(0, 900)),
                created_at=PLAN_NOW - timedelta(hours=1),
            )
            for i in range(runners)
        ],
        "pools": specs,
        "now": PLAN_NOW,
        "global_max": 5000,
    }


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls after one warm-up, seconds: on a shared machine
    the minimum is the figure least disturbed by other processes (as ``timeit`` does)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def planner_scaling(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> list[dict[str, Any]]:
    """compute_plan against the per-job matching it replaced, same world, same run."""
    rows = []
    for size in sizes:
        world = planner_world(size)
        if compute_plan(**world) != reference_plan(**world):
            raise AssertionError(f"fast and reference plans differ at {size} jobs")
        fast = _best_of(lambda w=world: compute_plan(**w), 15 if size < 100_000 else 5)
        ref = _best_of(lambda w=world: reference_plan(**w), 3 if size < 100_000 else 2)
        rows.append(
            {
                "jobs": size,
                "runners": len(world["runners"]),
                "pools": len(world["pools"]),
                "distinct_tag_sets": len({j.tags for j in world["jobs"]}),
                "plan_ms": round(fast * 1000, 1),
                "reference_ms": round(ref * 1000, 1),
                "speedup": round(ref / fast, 1),
            }
        )
    return rows
