"""Plain data shared by the planner, the reconciler, the journal and the HTTP layer.

Glossary (the same words are used everywhere in code and docs):

* **forge**: GitLab or GitHub, where jobs queue and runners register.
* **job**: one CI job waiting for a runner, with its tags (GitLab) or labels (GitHub).
* **pool**: a runner template from config (labels, image, platform, limits, min idle, max...).
* **runner**: one container plus its registration on a forge.
* **plan**: the pure result of comparing demand with supply.

Nothing in here does I/O or reads the clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from providers.base import ForgeKind as ForgeKind  # noqa: PLC0414 - re-export, defined once

#: Where a runner container finds its credential file (file delivery; docs/runner-contract.md).
CREDENTIAL_DIR = "/run/runner-orchestrator"
CREDENTIAL_FILE = f"{CREDENTIAL_DIR}/credential"


class RunnerState(StrEnum):
    """Where a runner is in its life. Every change is journalled before it happens."""

    REQUESTED = "requested"  # journal row exists; nothing outside yet
    REGISTERING = "registering"  # about to ask the forge for a registration
    STARTING = "starting"  # registered; container being created/started
    IDLE = "idle"  # container running, no job
    BUSY = "busy"  # container running a job
    DRAINING = "draining"  # being unregistered, stopped and removed
    REMOVED = "removed"  # nothing left outside; terminal
    FAILED = "failed"  # something went wrong; clean-up still owed


TRANSITIONS: Mapping[RunnerState, frozenset[RunnerState]] = {
    RunnerState.REQUESTED: frozenset(
        {RunnerState.REGISTERING, RunnerState.FAILED, RunnerState.DRAINING}
    ),
    RunnerState.REGISTERING: frozenset(
        {RunnerState.STARTING, RunnerState.FAILED, RunnerState.DRAINING}
    ),
    RunnerState.STARTING: frozenset(
        {RunnerState.IDLE, RunnerState.BUSY, RunnerState.FAILED, RunnerState.DRAINING}
    ),
    RunnerState.IDLE: frozenset({RunnerState.BUSY, RunnerState.DRAINING, RunnerState.FAILED}),
    # busy -> draining only when the container itself ended (ephemeral runner done);
    # the planner never chooses it.
    RunnerState.BUSY: frozenset({RunnerState.IDLE, RunnerState.DRAINING, RunnerState.FAILED}),
    # draining -> busy: the forge refused to unregister a runner that just took a job
    # (GitHub answers 422); it keeps running and is retired later.
    RunnerState.DRAINING: frozenset({RunnerState.REMOVED, RunnerState.FAILED, RunnerState.BUSY}),
    RunnerState.FAILED: frozenset({RunnerState.DRAINING, RunnerState.REMOVED}),
    RunnerState.REMOVED: frozenset(),
}

#: States in which a runner counts against a pool's max (everything not yet removed).
ACTIVE_STATES = frozenset(s for s in RunnerState if s is not RunnerState.REMOVED)
#: States in which a runner can still take a new job (or soon will).
FREE_STATES = frozenset(
    {RunnerState.REQUESTED, RunnerState.REGISTERING, RunnerState.STARTING, RunnerState.IDLE}
)
#: States that mean "on its way up": a start timeout applies to these.
STARTING_STATES = frozenset({RunnerState.REQUESTED, RunnerState.REGISTERING, RunnerState.STARTING})


class InvalidTransition(ValueError):
    """A state change the lifecycle does not allow."""

    def __init__(self, runner_id: str, from_: RunnerState, to: RunnerState) -> None:
        super().__init__(f"runner {runner_id}: {from_.value} -> {to.value} is not allowed")
        self.runner_id = runner_id
        self.from_ = from_
        self.to = to


def check_transition(runner_id: str, from_: RunnerState, to: RunnerState) -> None:
    """Raise :class:`InvalidTransition` unless ``from_ -> to`` is in :data:`TRANSITIONS`."""
    if to not in TRANSITIONS[from_]:
        raise InvalidTransition(runner_id, from_, to)


#: The one default-platform rule: a pool with ``platform: auto`` (or a runner whose
#: platform is unknown) runs on this platform unless a job's tags say otherwise.
DEFAULT_PLATFORM = "linux/amd64"
#: The pool platform value that means "pick per job from its tags".
AUTO_PLATFORM = "auto"


def concrete_platform(platform: str) -> str:
    """``platform`` itself, or :data:`DEFAULT_PLATFORM` for ``auto`` or empty."""
    return DEFAULT_PLATFORM if platform in {AUTO_PLATFORM, ""} else platform


class WaitReason(StrEnum):
    """Why a pending job does not have a runner yet. Shown in /status and as a metric label."""

    RUNNER_STARTING = "runner_starting"  # capacity exists or is being created for it
    NO_MATCHING_POOL = "no_matching_pool"
    POOL_AT_MAX = "pool_at_max"
    GLOBAL_MAX = "global_max"
    FORGE_PAUSED = "forge_paused"
    POOL_UNAVAILABLE = "pool_unavailable"  # e.g. its Docker host is down


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A job waiting at a forge for a runner.

    ``key`` is unique across forges (``<forge>:<job id>``); ``tags`` are GitLab tags or
    GitHub ``runs-on`` labels exactly as the forge reports them.
    """

    forge: str
    id: str
    scope: str  # GitLab project path/id, GitHub owner/repo
    tags: frozenset[str]
    created_at: datetime
    pipeline: str = ""  # GitLab pipeline id / GitHub run id
    name: str = ""

    @property
    def key(self) -> str:
        return f"{self.forge}:{self.id}"


@dataclasses.dataclass(frozen=True, slots=True)
class PoolSpec:
    """What the planner needs to know of a pool (the rest of the pool config is for the runtime)."""

    name: str
    forge: str
    forge_kind: ForgeKind
    labels: frozenset[str]
    platform: str  # "linux/amd64", "linux/arm64" or "auto"
    run_untagged: bool
    max_runners: int
    min_idle: int
    max_idle: int | None
    cooldown_s: float
    ephemeral: bool
    start_timeout_s: float = 600.0
    #: Its forge registers each runner in its job's scope (several repos, projects or
    #: groups): a runner then serves only jobs of the scope it was registered in.
    scope_bound: bool = False

    @property
    def default_platform(self) -> str:
        """Where this pool's runners run when no job says otherwise (``auto``: the default)."""
        return concrete_platform(self.platform)


@dataclasses.dataclass(frozen=True, slots=True)
class Runner:
    """A runner as the journal knows it. Immutable snapshot; the journal owns the truth."""

    id: str
    name: str
    pool: str
    forge: str
    state: RunnerState
    since: datetime  # when it entered ``state``
    created_at: datetime
    platform: str = ""
    host: str = ""
    container_id: str = ""
    forge_runner_id: str = ""
    current_job: str = ""
    last_job_ended_at: datetime | None = None
    exit_code: int | None = None
    error: str = ""
    logs_tail: str = ""
    #: The scope (project, ``owner/repo``) of the job it was created for, where a
    #: scope-bound pool registers it; '' for a warm or manual runner or an older row.
    #: The planner holds it to that scope only when its pool is ``scope_bound``.
    scope: str = ""

    @property
    def idle_since(self) -> datetime:
        """Cooldown counts from the end of the last job, else from when it became idle."""
        if self.last_job_ended_at is not None and self.last_job_ended_at > self.since:
            return self.last_job_ended_at
        return self.since


@dataclasses.dataclass(frozen=True, slots=True)
class CreateRequest:
    """Create ``count`` runners in ``pool`` on ``platform`` (for these job keys, if any)."""

    pool: str
    platform: str
    count: int
    jobs: tuple[str, ...] = ()
    reason: str = "demand"  # demand | min_idle | manual
    #: ``scopes[i]`` is the scope (project, ``owner/repo``) of ``jobs[i]``: a repo-level
    #: runner must be registered where its job is.
    scopes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RetireRequest:
    runner_id: str
    pool: str
    reason: str  # cooldown | max_idle | start_timeout | failed | manual


@dataclasses.dataclass(frozen=True, slots=True)
class WaitingJob:
    job: Job
    pool: str | None
    reason: WaitReason
    detail: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer. ``waiting`` has one entry for every job not yet running."""

    create: tuple[CreateRequest, ...] = ()
    retire: tuple[RetireRequest, ...] = ()
    waiting: tuple[WaitingJob, ...] = ()
