"""The planner: demand + supply + pools + now -> Plan. Pure: no I/O, no clock reads.

Rules, in the order they are applied:

1. Every pending job is matched to the most specific pool (:mod:`orchestrator.labels`;
   one :class:`~orchestrator.labels.PoolMatcher` per plan, so the cost grows with the
   number of jobs, not jobs times pools).
   A job no pool serves gets ``no_matching_pool``; a job of a paused forge gets
   ``forge_paused``; a job whose pool cannot place containers gets ``pool_unavailable``.
2. Jobs are served oldest first. A job is covered by a *free* runner of its pool and
   platform (requested, registering, starting or idle) if one is left, else by a new
   runner if the pool's max and the global max allow, else it waits with
   ``pool_at_max`` / ``global_max``. Every job appears in ``Plan.waiting`` exactly once,
   so nothing is silently dropped. In a ``scope_bound`` pool (its forge registers each
   runner in its job's repository or project) a runner with a scope is free only for jobs
   of that scope: one idle in repo A is no supply for a job in repo B. A runner without a
   scope (single-scope forges, warm runners, older journal rows) serves any job.
3. Warm pools: after demand, each pool gets new runners until ``min_idle`` free runners
   remain uncommitted, within the same limits. Operator scale-up requests come last.
4. Retirement never touches a busy runner. Failed runners and runners stuck starting
   past ``start_timeout_s`` are retired. Idle runners beyond those needed for pending
   jobs and ``min_idle`` are retired when idle longer than the cooldown, or at once when
   more than ``max_idle`` are idle. Operator scale-down retires idle runners only. An
   idle runner with a scope is kept only for pending jobs of its scope, so demand in B
   never holds a runner idling in A.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from orchestrator.labels import PoolMatcher
from orchestrator.models import (
    ACTIVE_STATES,
    DEFAULT_PLATFORM,
    FREE_STATES,
    STARTING_STATES,
    CreateRequest,
    Job,
    Plan,
    PoolSpec,
    RetireRequest,
    Runner,
    RunnerState,
    WaitingJob,
    WaitReason,
)

Bucket = tuple[str, str]  # (pool name, platform)
Slot = tuple[str, str, str]  # (pool name, platform, scope): '' serves any scope


@dataclasses.dataclass
class _Capacity:
    """Room left under the pool maxima and the global max while the plan is built."""

    pool_room: dict[str, int]
    global_room: int

    def take(self, pool: str) -> WaitReason | None:
        if self.pool_room.get(pool, 0) <= 0:
            return WaitReason.POOL_AT_MAX
        if self.global_room <= 0:
            return WaitReason.GLOBAL_MAX
        self.pool_room[pool] -= 1
        self.global_room -= 1
        return None


def _runner_platform(runner: Runner, pool: PoolSpec | None) -> str:
    if runner.platform:
        return runner.platform
    return pool.default_platform if pool is not None else DEFAULT_PLATFORM


def _runner_scope(runner: Runner, pool: PoolSpec | None) -> str:
    """The scope a runner is held to: its own in a scope-bound pool, else '' (any)."""
    return runner.scope if pool is not None and pool.scope_bound else ""


def compute_plan(
    *,
    jobs: Iterable[Job],
    runners: Iterable[Runner],
    pools: Sequence[PoolSpec],
    now: datetime,
    global_max: int,
    paused_forges: Mapping[str, str] | None = None,
    unavailable_pools: Mapping[str, str] | None = None,
    scale_up: Mapping[str, int] | None = None,
    scale_down: Mapping[str, int] | None = None,
) -> Plan:
    """Compare demand with supply and say what to create and retire. See module doc."""
    paused = paused_forges or {}
    unavailable = unavailable_pools or {}
    by_name = {p.name: p for p in pools}
    active = [r for r in runners if r.state in ACTIVE_STATES]

    per_pool = Counter(r.pool for r in active)
    capacity = _Capacity(
        pool_room={p.name: max(0, p.max_runners - per_pool[p.name]) for p in pools},
        global_room=max(0, global_max - len(active)),
    )
    free: Counter[Slot] = Counter()
    for r in active:
        if r.state in FREE_STATES:
            pool_of = by_name.get(r.pool)
            free[(r.pool, _runner_platform(r, pool_of), _runner_scope(r, pool_of))] += 1
    creates: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    scopes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    create_counts: Counter[tuple[str, str, str]] = Counter()
    waiting: list[WaitingJob] = []
    demand: Counter[Slot] = Counter()

    matcher = PoolMatcher(pools)
    for job in sorted(jobs, key=lambda j: (j.created_at, j.key)):
        match = matcher.match(job)
        pool = match.pool
        if pool is None:
            waiting.append(WaitingJob(job, None, WaitReason.NO_MATCHING_POOL, match.why))
            continue
        if pool.forge in paused:
            waiting.append(WaitingJob(job, pool.name, WaitReason.FORGE_PAUSED, paused[pool.forge]))
            continue
        bucket = (pool.name, match.platform)
        slot = (pool.name, match.platform, "")  # served by a runner of any scope
        if pool.scope_bound:
            # A runner of the job's own scope first, then one that serves any scope.
            own = (pool.name, match.platform, job.scope)
            demand[own] += 1
            if free[own] > 0:
                slot = own
        else:
            demand[slot] += 1
        if free[slot] > 0:
            free[slot] -= 1
            waiting.append(WaitingJob(job, pool.name, WaitReason.RUNNER_STARTING))
            continue
        if pool.name in unavailable:
            waiting.append(
                WaitingJob(job, pool.name, WaitReason.POOL_UNAVAILABLE, unavailable[pool.name])
            )
            continue
        refused = capacity.take(pool.name)
        if refused is WaitReason.POOL_AT_MAX:
            detail = f"pool {pool.name} is at its max of {pool.max_runners} runners"
            waiting.append(WaitingJob(job, pool.name, refused, detail))
            continue
        if refused is WaitReason.GLOBAL_MAX:
            detail = f"all pools together are at the global max of {global_max} runners"
            waiting.append(WaitingJob(job, pool.name, refused, detail))
            continue
        key = (bucket[0], bucket[1], "demand")
        create_counts[key] += 1
        creates[key].append(job.key)
        scopes[key].append(job.scope)
        waiting.append(WaitingJob(job, pool.name, WaitReason.RUNNER_STARTING))

    for pool in pools:
        if pool.forge in paused or pool.name in unavailable or pool.min_idle <= 0:
            continue
        bucket = (pool.name, pool.default_platform)
        # free[...] now holds the free runners no pending job has claimed (any scope: a
        # scope-bound pool cannot have min_idle > 0, config refuses it).
        unclaimed = sum(n for (name, platform, _), n in free.items() if (name, platform) == bucket)
        for _ in range(max(0, pool.min_idle - unclaimed)):
            if capacity.take(pool.name) is not None:
                break
            create_counts[(bucket[0], bucket[1], "min_idle")] += 1

    for name, count in (scale_up or {}).items():
        pool = by_name.get(name)
        if pool is None or pool.forge in paused or name in unavailable:
            continue
        platform = pool.default_platform
        for _ in range(max(0, count)):
            if capacity.take(name) is not None:
                break
            create_counts[(name, platform, "manual")] += 1

    create = tuple(
        CreateRequest(
            pool=k[0],
            platform=k[1],
            count=n,
            jobs=tuple(creates.get(k, ())),
            reason=k[2],
            scopes=tuple(scopes.get(k, ())),
        )
        for k, n in create_counts.items()
        if n > 0
    )
    retire = _retirements(active, by_name, now, demand, paused, scale_down or {})
    return Plan(create=create, retire=tuple(retire), waiting=tuple(waiting))


def _retirements(
    active: Sequence[Runner],
    pools: Mapping[str, PoolSpec],
    now: datetime,
    demand: Mapping[Slot, int],
    paused: Mapping[str, str],
    scale_down: Mapping[str, int],
) -> list[RetireRequest]:
    retire: list[RetireRequest] = []
    idle_by_bucket: dict[Bucket, list[Runner]] = defaultdict(list)
    for runner in active:
        pool = pools.get(runner.pool)
        if runner.state is RunnerState.FAILED:
            retire.append(RetireRequest(runner.id, runner.pool, "failed"))
            continue
        if pool is None:
            # Its pool was removed from config: retire it as soon as it is not busy.
            if runner.state is RunnerState.IDLE:
                retire.append(RetireRequest(runner.id, runner.pool, "pool_removed"))
            continue
        if pool.forge in paused:
            continue  # unregister-first is impossible while the forge does not answer
        if runner.state in STARTING_STATES:
            if (now - runner.since).total_seconds() >= pool.start_timeout_s:
                retire.append(RetireRequest(runner.id, runner.pool, "start_timeout"))
            continue
        if runner.state is RunnerState.IDLE:
            idle_by_bucket[(runner.pool, _runner_platform(runner, pool))].append(runner)

    demand_by_bucket: Counter[Bucket] = Counter()
    for (pool_name, platform, _), count in demand.items():
        demand_by_bucket[(pool_name, platform)] += count

    manual_left = dict(scale_down)
    for (pool_name, platform), idle in idle_by_bucket.items():
        pool = pools[pool_name]
        # Most recently active first: those are the ones we keep.
        idle.sort(key=lambda r: (r.idle_since, r.id), reverse=True)
        default_platform = pool.default_platform
        warm = pool.min_idle if platform == default_platform else 0
        # Kept for pending jobs: a runner with a scope only for jobs of its scope, one
        # without for any job of the bucket (and the warm ones).
        room: Counter[str] = Counter()
        room[""] = demand_by_bucket[(pool_name, platform)] + warm
        kept: set[str] = set()
        for runner in idle:
            scope = _runner_scope(runner, pool)
            if scope and scope not in room:
                room[scope] = demand.get((pool_name, platform, scope), 0)
            if room[scope] > 0:
                room[scope] -= 1
                kept.add(runner.id)
        reserved = len(kept)
        max_idle = pool.max_idle if pool.max_idle is not None else len(idle)
        index = reserved - 1
        for runner in idle:
            if runner.id in kept:
                continue
            index += 1
            idle_for = (now - runner.idle_since).total_seconds()
            if index >= max(max_idle, reserved):
                retire.append(RetireRequest(runner.id, pool_name, "max_idle"))
            elif idle_for >= pool.cooldown_s:
                retire.append(RetireRequest(runner.id, pool_name, "cooldown"))
            elif manual_left.get(pool_name, 0) > 0:
                manual_left[pool_name] -= 1
                retire.append(RetireRequest(runner.id, pool_name, "manual"))
    return retire
