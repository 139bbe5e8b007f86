"""A runner is registered where its job is: the job's scope travels from the poll through
the plan to the provider's RunnerRequest (several GitHub repositories without an org
serve each repository with its own repo-level runners)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from orchestrator.config import ConfigError, Settings, load_settings
from orchestrator.metrics import Metrics
from orchestrator.models import ForgeKind, Job, PoolSpec, RunnerState
from orchestrator.planner import compute_plan
from orchestrator.reconciler import Reconciler
from orchestrator.snapshot import runner_json
from orchestrator.state import Journal
from providers.base import PendingJob, Registration, RunnerRequest
from tests.conftest import Clock
from tests.fakes import FakeForge, FakeRuntime, FakeWorld

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class ScopedForge(FakeForge):
    """Jobs live in the scope the test says; every RunnerRequest is kept."""

    def __init__(self, world: FakeWorld, scopes: dict[str, str]) -> None:
        super().__init__(world, name="gitlab")
        self.scopes = scopes
        self.requests: list[RunnerRequest] = []

    async def pending_jobs(self) -> Sequence[PendingJob]:
        return [
            PendingJob(id=j.id, scope=self.scopes[j.id], tags=j.tags, created_at=j.created_at)
            for j in (await super().pending_jobs())
        ]

    async def register_runner(self, request: RunnerRequest) -> Registration:
        self.requests.append(request)
        return await super().register_runner(request)


async def test_each_runner_request_carries_the_scope_of_the_job_it_is_for(
    make_settings: Callable[..., Settings], clock: Clock
) -> None:
    settings = make_settings(
        pools=[{"name": "p", "labels": ["docker"], "max_runners": 5, "cooldown_s": 60}]
    )
    world = FakeWorld()
    scopes: dict[str, str] = {}
    forge = ScopedForge(world, scopes)
    first = world.add_job("gitlab", ["docker"], created_at=clock.now)
    scopes[first] = "group/app"
    second = world.add_job("gitlab", ["docker"], created_at=clock.now)
    scopes[second] = "group/lib"
    reconciler = Reconciler(
        settings=settings,
        journal=Journal(settings.journal_path),
        providers={"gitlab": forge},
        runtime=FakeRuntime(world),
        metrics=Metrics(),
        instance_id="test",
        clock=clock,
        nudge=lambda: None,
    )

    assert (await reconciler.run_once()).created == 2
    assert sorted(r.scope for r in forge.requests) == ["group/app", "group/lib"]
    # ... and is journalled with it (the planner holds the runner to it; /runners shows it).
    assert sorted(r.scope for r in reconciler.journal.active()) == ["group/app", "group/lib"]
    assert sorted(runner_json(r)["scope"] for r in reconciler.journal.active()) == [
        "group/app",
        "group/lib",
    ]


def test_the_plan_names_the_scope_of_every_job_it_creates_a_runner_for() -> None:
    spec = PoolSpec(
        name="p",
        forge="gh",
        forge_kind=ForgeKind.GITHUB,
        labels=frozenset({"linux"}),
        platform="linux/amd64",
        run_untagged=False,
        max_runners=5,
        min_idle=1,
        max_idle=None,
        cooldown_s=60,
        ephemeral=True,
    )
    jobs = [
        Job("gh", str(n), scope, frozenset({"linux"}), NOW)
        for n, scope in enumerate(["o/app", "o/lib", "o/app"])
    ]
    plan = compute_plan(jobs=jobs, runners=[], pools=[spec], global_max=10, now=NOW)
    demand = next(c for c in plan.create if c.reason == "demand")
    assert [(k, s) for k, s in zip(demand.jobs, demand.scopes, strict=True)] == [
        ("gh:0", "o/app"),
        ("gh:1", "o/lib"),
        ("gh:2", "o/app"),
    ]
    warm = next(c for c in plan.create if c.reason == "min_idle")
    assert warm.scopes == ()  # a warm runner serves no job in particular


def _env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


GITHUB = {"GITHUB_TOKEN": "ghp_testtoken0123456789abcdef", "GITHUB_REPO": "acme/app,acme/lib"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"MIN_RUNNERS": "1"}, "pools[0].min_idle (env MIN_RUNNERS): must be 0"),
        ({"RUNNER_EPHEMERAL": "false"}, "pools[0].ephemeral (env RUNNER_EPHEMERAL): must be true"),
    ],
)
def test_warm_or_reusable_runners_are_refused_when_runners_serve_one_repository_each(
    extra: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two repositories and no org: a warm runner sits in one repository while the planner
    # counts it free for a job of the other, which would then wait forever.
    _env(monkeypatch, **GITHUB, **extra)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert field in str(err.value)
    assert "forge 'github' registers runners in 2 scopes" in str(err.value)


def test_one_runner_scope_keeps_warm_and_reusable_runners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, **GITHUB, GITHUB_ORG="acme", MIN_RUNNERS="1", RUNNER_EPHEMERAL="false")
    spec = load_settings().pool_specs()[0]
    assert (spec.min_idle, spec.scope_bound) == (1, False)  # the org runner serves both
    _env(monkeypatch, **{**GITHUB, "GITHUB_REPO": "acme/app"}, MIN_RUNNERS="1")
    spec = load_settings().pool_specs()[0]
    assert (spec.min_idle, spec.scope_bound) == (1, False)


def test_runners_of_several_repositories_are_scope_bound_in_the_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, **GITHUB)
    assert load_settings().pool_specs()[0].scope_bound


def test_several_gitlab_projects_refuse_warm_runners_unless_one_group_serves_them(
    make_settings: Callable[..., Settings],
) -> None:
    pools = [{"name": "p", "labels": ["docker"], "min_idle": 1}]
    with pytest.raises(ValueError, match=r"pools\[0\]\.min_idle: must be 0"):
        make_settings(gitlab_projects=["g/a", "g/b"], pools=pools)
    forge = {"kind": "gitlab", "url": "http://gitlab.test", "groups": ["g"]}
    assert make_settings(forges=[forge], pools=pools).pools[0].min_idle == 1


async def test_a_runner_idle_in_one_project_neither_covers_nor_blocks_a_job_in_another(
    make_settings: Callable[..., Settings], clock: Clock
) -> None:
    # Two projects, each runner registered in its job's project. A's job is cancelled
    # while its runner starts; the runner idles in A. A job then arrives in B: before,
    # the planner counted A's idle runner for it (nothing created) and B's demand kept
    # that runner from retiring, so B waited forever.
    settings = make_settings(
        gitlab_projects=["group/app", "group/lib"],
        pools=[{"name": "p", "labels": ["docker"], "max_runners": 5, "cooldown_s": 60}],
    )
    world = FakeWorld()
    scopes: dict[str, str] = {}
    forge = ScopedForge(world, scopes)
    journal = Journal(settings.journal_path)
    reconciler = Reconciler(
        settings=settings,
        journal=journal,
        providers={"gitlab": forge},
        runtime=FakeRuntime(world),
        metrics=Metrics(),
        instance_id="test",
        clock=clock,
        nudge=lambda: None,
    )
    in_app = world.add_job("gitlab", ["docker"], created_at=clock.now)
    scopes[in_app] = "group/app"
    assert (await reconciler.run_once()).created == 1
    world.jobs[in_app].status = "canceled"
    clock.advance(5)
    await reconciler.run_once()
    (app_runner,) = journal.active()
    assert (app_runner.scope, app_runner.state) == ("group/app", RunnerState.IDLE)

    in_lib = world.add_job("gitlab", ["docker"], created_at=clock.now)
    scopes[in_lib] = "group/lib"
    assert (await reconciler.run_once()).created == 1
    assert [r.scope for r in forge.requests] == ["group/app", "group/lib"]

    clock.advance(61)  # past the cooldown, B's job still pending
    await reconciler.run_once()
    assert journal.get(app_runner.id).state is RunnerState.REMOVED
    assert [r.scope for r in journal.active()] == ["group/lib"]
