"""Planner: table-driven scenarios plus hypothesis invariants."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.labels import job_platform
from orchestrator.models import (
    FREE_STATES,
    ForgeKind,
    Job,
    Plan,
    PoolSpec,
    Runner,
    RunnerState,
    WaitReason,
)
from orchestrator.planner import compute_plan
from tests.reference_planner import reference_plan

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def pool(
    name: str,
    labels: set[str],
    *,
    forge: str = "gl",
    kind: ForgeKind = ForgeKind.GITLAB,
    max_runners: int = 10,
    min_idle: int = 0,
    max_idle: int | None = None,
    cooldown: float = 300,
    platform: str = "linux/amd64",
    untagged: bool = False,
    ephemeral: bool = True,
    scope_bound: bool = False,
) -> PoolSpec:
    return PoolSpec(
        name=name,
        forge=forge,
        forge_kind=kind,
        labels=frozenset(labels),
        platform=platform,
        run_untagged=untagged,
        max_runners=max_runners,
        min_idle=min_idle,
        max_idle=max_idle,
        cooldown_s=cooldown,
        ephemeral=ephemeral,
        start_timeout_s=600,
        scope_bound=scope_bound,
    )


def job(jid: str, tags: set[str], *, forge: str = "gl", age: float = 10, scope: str = "p") -> Job:
    return Job(
        forge=forge,
        id=jid,
        scope=scope,
        tags=frozenset(tags),
        created_at=NOW - timedelta(seconds=age),
    )


def runner(
    rid: str,
    pool_name: str,
    state: RunnerState,
    *,
    since_s: float = 0,
    platform: str = "linux/amd64",
    last_job_s: float | None = None,
    scope: str = "",
) -> Runner:
    return Runner(
        id=rid,
        name=rid,
        pool=pool_name,
        forge="gl",
        state=state,
        since=NOW - timedelta(seconds=since_s),
        created_at=NOW - timedelta(hours=1),
        platform=platform,
        last_job_ended_at=None if last_job_s is None else NOW - timedelta(seconds=last_job_s),
        scope=scope,
    )


def creates(plan) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out: dict[str, int] = {}
    for c in plan.create:
        out[c.pool] = out.get(c.pool, 0) + c.count
    return out


AMD = pool("amd64", {"docker", "amd64"})
ARM = pool("arm64", {"docker", "arm64"}, platform="linux/arm64")
GPU = pool("gpu", {"docker", "amd64", "gpu"})
ANY = pool("any", {"docker"}, untagged=True)


@pytest.mark.parametrize(
    ("case", "pools", "jobs", "runners", "global_max", "want_create", "want_reasons"),
    [
        (
            "one tagged job -> one runner in its pool",
            [AMD, ARM],
            [job("1", {"docker", "amd64"})],
            [],
            10,
            {"amd64": 1},
            {"1": WaitReason.RUNNER_STARTING},
        ),
        (
            "most specific pool wins",
            [ANY, AMD, GPU],
            [job("1", {"docker", "amd64"})],
            [],
            10,
            {"amd64": 1},
            {"1": WaitReason.RUNNER_STARTING},
        ),
        (
            "gpu job only to gpu pool",
            [AMD, GPU],
            [job("1", {"gpu", "amd64", "docker"})],
            [],
            10,
            {"gpu": 1},
            {},
        ),
        (
            "no pool covers the tags",
            [AMD, ARM],
            [job("1", {"windows"})],
            [],
            10,
            {},
            {"1": WaitReason.NO_MATCHING_POOL},
        ),
        (
            "untagged job only to run_untagged pools",
            [AMD],
            [job("1", set())],
            [],
            10,
            {},
            {"1": WaitReason.NO_MATCHING_POOL},
        ),
        (
            "untagged job to the untagged pool",
            [AMD, ANY],
            [job("1", set())],
            [],
            10,
            {"any": 1},
            {},
        ),
        (
            "idle runner covers the job: no spawn",
            [AMD],
            [job("1", {"amd64"})],
            [runner("r1", "amd64", RunnerState.IDLE)],
            10,
            {},
            {"1": WaitReason.RUNNER_STARTING},
        ),
        (
            "starting runner covers the job: no spawn",
            [AMD],
            [job("1", {"amd64"})],
            [runner("r1", "amd64", RunnerState.STARTING)],
            10,
            {},
            {},
        ),
        (
            "busy runner does not cover a new job",
            [AMD],
            [job("1", {"amd64"})],
            [runner("r1", "amd64", RunnerState.BUSY)],
            10,
            {"amd64": 1},
            {},
        ),
        (
            "pool at max",
            [pool("amd64", {"amd64"}, max_runners=1)],
            [job("1", {"amd64"})],
            [runner("r1", "amd64", RunnerState.BUSY)],
            10,
            {},
            {"1": WaitReason.POOL_AT_MAX},
        ),
        (
            "global max",
            [AMD, ARM],
            [job("1", {"amd64"}), job("2", {"arm64"}, age=5)],
            [],
            1,
            {"amd64": 1},
            {"2": WaitReason.GLOBAL_MAX},
        ),
        (
            "oldest job served first at the limit",
            [pool("amd64", {"amd64"}, max_runners=1)],
            [job("new", {"amd64"}, age=1), job("old", {"amd64"}, age=100)],
            [],
            10,
            {"amd64": 1},
            {"old": WaitReason.RUNNER_STARTING, "new": WaitReason.POOL_AT_MAX},
        ),
        (
            "min idle keeps a warm runner",
            [pool("amd64", {"amd64"}, min_idle=2)],
            [],
            [runner("r1", "amd64", RunnerState.IDLE)],
            10,
            {"amd64": 1},
            {},
        ),
        (
            "other forge's job never matches",
            [AMD],
            [job("1", {"amd64"}, forge="gh")],
            [],
            10,
            {},
            {"1": WaitReason.NO_MATCHING_POOL},
        ),
    ],
)
def test_plan_table(case, pools, jobs, runners, global_max, want_create, want_reasons) -> None:
    plan = compute_plan(jobs=jobs, runners=runners, pools=pools, now=NOW, global_max=global_max)
    assert creates(plan) == want_create, case
    reasons = {w.job.id: w.reason for w in plan.waiting}
    assert len(plan.waiting) == len(jobs), "every job is accounted for"
    for jid, reason in want_reasons.items():
        assert reasons[jid] == reason, case


def test_paused_forge_jobs_wait_with_reason_and_nothing_is_created() -> None:
    plan = compute_plan(
        jobs=[job("1", {"amd64"})],
        runners=[],
        pools=[AMD],
        now=NOW,
        global_max=10,
        paused_forges={"gl": "500 from forge"},
    )
    assert plan.create == ()
    assert plan.waiting[0].reason is WaitReason.FORGE_PAUSED
    assert "500" in plan.waiting[0].detail


def test_unavailable_pool_is_reported_not_spawned() -> None:
    plan = compute_plan(
        jobs=[job("1", {"amd64"})],
        runners=[],
        pools=[AMD],
        now=NOW,
        global_max=10,
        unavailable_pools={"amd64": "docker host down"},
    )
    assert plan.create == ()
    assert plan.waiting[0].reason is WaitReason.POOL_UNAVAILABLE


@pytest.mark.parametrize(
    ("case", "runners", "pools", "jobs", "want_retired"),
    [
        (
            "idle past cooldown is retired",
            [runner("r1", "amd64", RunnerState.IDLE, since_s=400)],
            [AMD],
            [],
            {"r1": "cooldown"},
        ),
        (
            "idle within cooldown stays",
            [runner("r1", "amd64", RunnerState.IDLE, since_s=100)],
            [AMD],
            [],
            {},
        ),
        (
            "cooldown counts from the end of the last job",
            [runner("r1", "amd64", RunnerState.IDLE, since_s=1000, last_job_s=10)],
            [AMD],
            [],
            {},
        ),
        (
            "busy is never retired",
            [runner("r1", "amd64", RunnerState.BUSY, since_s=99999)],
            [AMD],
            [],
            {},
        ),
        (
            "min idle is kept past cooldown",
            [runner("r1", "amd64", RunnerState.IDLE, since_s=999)],
            [pool("amd64", {"amd64"}, min_idle=1)],
            [],
            {},
        ),
        (
            "idle runner kept for a pending job",
            [runner("r1", "amd64", RunnerState.IDLE, since_s=999)],
            [AMD],
            [job("1", {"amd64"})],
            {},
        ),
        (
            "beyond max idle retired at once",
            [runner(f"r{i}", "amd64", RunnerState.IDLE, since_s=i) for i in range(3)],
            [pool("amd64", {"amd64"}, max_idle=1)],
            [],
            {"r1": "max_idle", "r2": "max_idle"},
        ),
        (
            "failed runners are cleaned up",
            [runner("r1", "amd64", RunnerState.FAILED)],
            [AMD],
            [],
            {"r1": "failed"},
        ),
        (
            "stuck starting past the start timeout",
            [runner("r1", "amd64", RunnerState.STARTING, since_s=601)],
            [AMD],
            [],
            {"r1": "start_timeout"},
        ),
    ],
)
def test_retirement_table(case, runners, pools, jobs, want_retired) -> None:
    plan = compute_plan(jobs=jobs, runners=runners, pools=pools, now=NOW, global_max=10)
    assert {r.runner_id: r.reason for r in plan.retire} == want_retired, case


def test_manual_scale_up_and_down() -> None:
    idle = [runner(f"r{i}", "amd64", RunnerState.IDLE, since_s=10) for i in range(3)]
    plan = compute_plan(
        jobs=[],
        runners=idle,
        pools=[AMD],
        now=NOW,
        global_max=10,
        scale_up={"amd64": 2},
        scale_down={"amd64": 2},
    )
    assert creates(plan) == {"amd64": 2}
    assert [r.reason for r in plan.retire] == ["manual", "manual"]


def test_auto_platform_pool_picks_arch_per_job() -> None:
    auto = pool("multi", {"docker"}, platform="auto")
    plan = compute_plan(
        jobs=[job("1", {"docker", "arm64"}), job("2", {"docker", "x86_64"})],
        runners=[],
        pools=[auto],
        now=NOW,
        global_max=10,
    )
    assert sorted((c.platform, c.count) for c in plan.create) == [
        ("linux/amd64", 1),
        ("linux/arm64", 1),
    ]


# --- runner scopes (several repositories / projects on one forge) ----------------------------

#: A pool whose forge registers every runner in its job's repository: scope-bound.
REPOS = pool("repos", {"docker"}, forge="gh", kind=ForgeKind.GITHUB, scope_bound=True)
#: The same pool on a forge with one runner scope: any runner serves any job.
ONE = pool("repos", {"docker"}, forge="gh", kind=ForgeKind.GITHUB)


def scoped_runner(rid: str, scope: str, state: RunnerState, *, since_s: float = 0) -> Runner:
    return runner(rid, "repos", state, since_s=since_s, scope=scope)


@pytest.mark.parametrize(
    ("case", "pools", "runners", "jobs", "want_created_for", "want_retired"),
    [
        (
            "idle in A is no supply for a job in B: B gets its own, A's retires after cooldown",
            [REPOS],
            [scoped_runner("ra", "o/a", RunnerState.IDLE, since_s=400)],
            [job("1", {"docker"}, forge="gh", scope="o/b")],
            ["o/b"],
            {"ra": "cooldown"},
        ),
        (
            "idle in A within its cooldown stays, B still gets its own",
            [REPOS],
            [scoped_runner("ra", "o/a", RunnerState.IDLE, since_s=10)],
            [job("1", {"docker"}, forge="gh", scope="o/b")],
            ["o/b"],
            {},
        ),
        (
            "a runner starting in A does not cover B",
            [REPOS],
            [scoped_runner("ra", "o/a", RunnerState.STARTING)],
            [job("1", {"docker"}, forge="gh", scope="o/b")],
            ["o/b"],
            {},
        ),
        (
            "idle in A serves A's job and is kept past its cooldown",
            [REPOS],
            [scoped_runner("ra", "o/a", RunnerState.IDLE, since_s=400)],
            [job("1", {"docker"}, forge="gh", scope="o/a")],
            [],
            {},
        ),
        (
            "A's job and B's job: A's idle runner covers A's, B gets a new one",
            [REPOS],
            [scoped_runner("ra", "o/a", RunnerState.IDLE, since_s=400)],
            [
                job("1", {"docker"}, forge="gh", scope="o/b", age=20),
                job("2", {"docker"}, forge="gh", scope="o/a", age=10),
            ],
            ["o/b"],
            {},
        ),
        (
            "a runner without a scope (older journal row) serves any scope, as before",
            [REPOS],
            [scoped_runner("r0", "", RunnerState.IDLE, since_s=400)],
            [job("1", {"docker"}, forge="gh", scope="o/b")],
            [],
            {},
        ),
        (
            "single-scope forge: the scope is not looked at, the idle runner covers B",
            [ONE],
            [scoped_runner("ra", "o/a", RunnerState.IDLE, since_s=400)],
            [job("1", {"docker"}, forge="gh", scope="o/b")],
            [],
            {},
        ),
    ],
)
def test_scope_table(case, pools, runners, jobs, want_created_for, want_retired) -> None:  # type: ignore[no-untyped-def]
    plan = compute_plan(jobs=jobs, runners=runners, pools=pools, now=NOW, global_max=10)
    assert [s for c in plan.create for s in c.scopes] == want_created_for, case
    assert {r.runner_id: r.reason for r in plan.retire} == want_retired, case
    assert {w.reason for w in plan.waiting} <= {WaitReason.RUNNER_STARTING}, case


def test_an_idle_runner_left_in_a_retires_while_b_keeps_waiting_at_max() -> None:
    """The bug: B's demand kept A's idle runner from retiring, so B waited forever."""
    full = dataclasses.replace(REPOS, max_runners=1)
    plan = compute_plan(
        jobs=[job("1", {"docker"}, forge="gh", scope="o/b")],
        runners=[scoped_runner("ra", "o/a", RunnerState.IDLE, since_s=400)],
        pools=[full],
        now=NOW,
        global_max=10,
    )
    assert plan.create == ()
    assert [w.reason for w in plan.waiting] == [WaitReason.POOL_AT_MAX]
    assert [(r.runner_id, r.reason) for r in plan.retire] == [("ra", "cooldown")]


# --- hypothesis invariants ------------------------------------------------------------------

STATES = [s for s in RunnerState if s is not RunnerState.REMOVED]
TAGS = ["docker", "amd64", "arm64", "gpu", "x"]


@st.composite
def worlds(draw):  # type: ignore[no-untyped-def]
    pools = [
        pool(
            "a",
            {"docker", "amd64"},
            max_runners=draw(st.integers(0, 5)),
            min_idle=draw(st.integers(0, 3)),
            max_idle=draw(st.none() | st.integers(0, 3)),
        ),
        pool(
            "b",
            {"docker", "arm64"},
            platform="linux/arm64",
            max_runners=draw(st.integers(0, 5)),
            min_idle=draw(st.integers(0, 3)),
        ),
        pool("c", {"docker"}, untagged=True, platform="auto", max_runners=draw(st.integers(0, 5))),
    ]
    runners = []
    per_pool = {"a": 0, "b": 0, "c": 0}
    for i in range(draw(st.integers(0, 12))):
        p = draw(st.sampled_from(pools))
        if per_pool[p.name] >= p.max_runners:
            continue
        per_pool[p.name] += 1
        runners.append(
            runner(
                f"r{i}",
                p.name,
                draw(st.sampled_from(STATES)),
                since_s=draw(st.floats(0, 2000)),
                platform="linux/arm64" if p.name == "b" else "linux/amd64",
            )
        )
    jobs = [
        job(
            str(i),
            set(draw(st.lists(st.sampled_from(TAGS), max_size=3))),
            age=draw(st.floats(0, 1000)),
        )
        for i in range(draw(st.integers(0, 15)))
    ]
    global_max = draw(st.integers(len(runners), len(runners) + 10))
    return pools, runners, jobs, global_max


@settings(max_examples=300, deadline=None)
@given(
    worlds(),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
)
def test_invariants(world, up, down) -> None:  # type: ignore[no-untyped-def]
    check_invariants(world, up, down)


def check_invariants(world, up, down) -> Plan:  # type: ignore[no-untyped-def]
    pools, runners, jobs, global_max = world
    plan = compute_plan(
        jobs=jobs,
        runners=runners,
        pools=pools,
        now=NOW,
        global_max=global_max,
        scale_up=up,
        scale_down=down,
    )
    created = creates(plan)
    # Max never exceeded, per pool and globally.
    for p in pools:
        existing = sum(1 for r in runners if r.pool == p.name)
        assert existing + created.get(p.name, 0) <= p.max_runners
    assert len(runners) + sum(created.values()) <= global_max
    # Busy never retired; nothing retired twice.
    busy = {r.id for r in runners if r.state is RunnerState.BUSY}
    retired = [r.runner_id for r in plan.retire]
    assert not busy & set(retired)
    assert len(retired) == len(set(retired))
    # Every job accounted for exactly once.
    assert sorted(w.job.id for w in plan.waiting) == sorted(j.id for j in jobs)
    # Idle runners are only retired when not needed for min_idle.
    for r in plan.retire:
        assert r.reason in {"cooldown", "max_idle", "failed", "start_timeout", "manual"}
    return plan


@st.composite
def scoped_worlds(draw):  # type: ignore[no-untyped-def]
    """Worlds where pools a and c are scope-bound (b is not) and everything has a scope."""
    pools, runners, jobs, global_max = draw(worlds())
    pools = [
        p if p.name == "b" else dataclasses.replace(p, scope_bound=True, min_idle=0) for p in pools
    ]
    runners = [dataclasses.replace(r, scope=draw(st.sampled_from(["", "A", "B"]))) for r in runners]
    jobs = [dataclasses.replace(j, scope=draw(st.sampled_from(["A", "B"]))) for j in jobs]
    return pools, runners, jobs, global_max


@settings(max_examples=300, deadline=None)
@given(
    scoped_worlds(),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
)
def test_a_runner_is_never_counted_for_a_job_of_another_scope(world, up, down) -> None:  # type: ignore[no-untyped-def]
    pools, runners, jobs, _ = world
    plan = check_invariants(world, up, down)
    by_name = {p.name: p for p in pools}
    # Per (pool, platform, scope): jobs told a runner is on its way, runners free for them.
    covered: Counter[tuple[str, str, str]] = Counter()
    for w in plan.waiting:
        if w.reason is WaitReason.RUNNER_STARTING and w.pool is not None:
            p = by_name[w.pool]
            covered[(p.name, job_platform(w.job, p), w.job.scope)] += 1
    for c in plan.create:
        for scope in c.scopes:
            covered[(c.pool, c.platform, scope)] -= 1  # a new runner of its own scope
    free: Counter[tuple[str, str, str]] = Counter()
    for r in runners:
        if r.state in FREE_STATES:
            free[(r.pool, r.platform, r.scope if by_name[r.pool].scope_bound else "")] += 1
    for p in pools:
        if not p.scope_bound:
            continue
        for platform in {k[1] for k in covered if k[0] == p.name}:
            # Jobs of scope S beyond S's own free runners draw on the scope-less ones only.
            short = sum(
                max(0, covered[(p.name, platform, s)] - free[(p.name, platform, s)])
                for s in ("A", "B")
            )
            assert short <= free[(p.name, platform, "")]
    # An idle runner held to a scope no pending job of its pool has retires after cooldown.
    retired = {r.runner_id for r in plan.retire}
    for r in runners:
        p = by_name[r.pool]
        if not (p.scope_bound and r.scope and r.state is RunnerState.IDLE):
            continue
        wanted = any(
            w.pool == p.name and w.job.scope == r.scope and job_platform(w.job, p) == r.platform
            for w in plan.waiting
        )
        if not wanted and (NOW - r.idle_since).total_seconds() >= p.cooldown_s:
            assert r.id in retired


# --- the fast planner against the per-job reference -----------------------------------------

MIXED_TAGS = ["docker", "Docker", "gpu", "amd64", "X64", "aarch64", "self-hosted", "linux"]


@st.composite
def mixed_worlds(draw):  # type: ignore[no-untyped-def]
    """GitLab and GitHub pools with random labels and platforms; jobs sharing tag sets."""
    pools = []
    for i in range(draw(st.integers(1, 5))):
        github = draw(st.booleans())
        pools.append(
            pool(
                f"p{i}",
                set(draw(st.lists(st.sampled_from(MIXED_TAGS), max_size=3))),
                forge="gh" if github else "gl",
                kind=ForgeKind.GITHUB if github else ForgeKind.GITLAB,
                max_runners=draw(st.integers(0, 6)),
                min_idle=draw(st.integers(0, 2)),
                max_idle=draw(st.none() | st.integers(0, 2)),
                platform=draw(st.sampled_from(["linux/amd64", "linux/arm64", "auto"])),
                untagged=draw(st.booleans()),
                scope_bound=draw(st.booleans()),
            )
        )
    runners = [
        runner(
            f"r{i}",
            draw(st.sampled_from([p.name for p in pools] + ["gone"])),
            draw(st.sampled_from(STATES)),
            since_s=draw(st.floats(0, 2000)),
            platform=draw(st.sampled_from(["", "linux/amd64", "linux/arm64"])),
            scope=draw(st.sampled_from(["", "o/a", "o/b"])),
        )
        for i in range(draw(st.integers(0, 10)))
    ]
    tag_sets = draw(st.lists(st.frozensets(st.sampled_from(MIXED_TAGS), max_size=3), min_size=1))
    jobs = [
        job(
            str(i),
            set(draw(st.sampled_from(tag_sets))),
            forge=draw(st.sampled_from(["gl", "gh"])),
            age=draw(st.integers(0, 5)),  # ties in age: the order must still agree
            scope=draw(st.sampled_from(["o/a", "o/b"])),
        )
        for i in range(draw(st.integers(0, 25)))
    ]
    paused = draw(st.dictionaries(st.sampled_from(["gl", "gh"]), st.just("down"), max_size=1))
    unavailable = draw(
        st.dictionaries(st.sampled_from([p.name for p in pools]), st.just("host down"), max_size=1)
    )
    return pools, runners, jobs, paused, unavailable, draw(st.integers(0, 30))


@settings(max_examples=300, deadline=None)
@given(mixed_worlds(), st.dictionaries(st.sampled_from(["p0", "p1"]), st.integers(0, 3)))
def test_fast_matching_plans_exactly_like_per_job_matching(world, up) -> None:  # type: ignore[no-untyped-def]
    """Fault guarded: the precomputed matcher changing any decision of the planner (which
    pool, which platform, which wait reason and detail, what is created or retired)."""
    pools, runners, jobs, paused, unavailable, global_max = world
    args = {
        "jobs": jobs,
        "runners": runners,
        "pools": pools,
        "now": NOW,
        "global_max": global_max,
        "paused_forges": paused,
        "unavailable_pools": unavailable,
        "scale_up": up,
    }
    assert compute_plan(**args) == reference_plan(**args)
