"""The seam between the daemon and a forge.

Glossary: in this project a **provider** is the adapter for one *forge* (GitLab, GitHub).
It is NOT the compute backend; containers are the *runtime*'s business
(``orchestrator.runtime``). This package never imports ``orchestrator``: the daemon
translates its config into the plain option objects below and hands them in.

A provider:

* lists the jobs waiting for a runner in its scopes (:meth:`Provider.pending_jobs`);
* registers a runner and returns only a *short-lived* credential for it
  (:meth:`Provider.register_runner`), never its own long-lived token;
* reports whether the runners it created are busy (:meth:`Provider.runner_activity`);
* unregisters them (:meth:`Provider.unregister_runner`), and finds the ones this daemon
  instance created, for orphan clean-up (:meth:`Provider.list_own_runners`);
* checks and parses webhook deliveries (:meth:`Provider.handle_webhook`).

All methods are coroutines: blocking forge libraries run in threads inside the adapter.
Errors are :mod:`providers.errors`, never a library's own exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ForgeKind(StrEnum):
    """Which forge API an adapter speaks. ``orchestrator.models`` re-exports it."""

    GITLAB = "gitlab"
    GITHUB = "github"


#: Called once for every HTTP request a provider makes:
#: ``(forge_name, endpoint_template, http_status_or_0_for_network_error)``.
#: ``endpoint_template`` is low-cardinality, e.g. ``"GET /projects/:id/jobs"``.
RequestObserver = Callable[[str, str, int], None]


def ignore_request(_forge: str, _endpoint: str, _status: int) -> None:
    """Default :data:`RequestObserver`: count nothing."""


#: Every runner name/description a daemon instance creates starts with this, followed by
#: ``<instance id>-``. It is how a provider recognises its own runners on the forge.
RUNNER_NAME_PREFIX = "ro-"


def runner_name_prefix(instance_id: str) -> str:
    """The prefix that marks forge runners created by daemon instance ``instance_id``."""
    return f"{RUNNER_NAME_PREFIX}{instance_id}-"


#: The one place the text form of a :class:`RunnerRef` without an id is spelled.
_BY_NAME = "name:"


@dataclasses.dataclass(frozen=True, slots=True)
class RunnerRef:
    """Which registration on a forge a call is about.

    Usually the forge's numeric id (``forge_id``). A runner that registers itself (a
    reusable GitHub runner running ``config.sh``) has no id until the forge has seen it:
    then only its ``name`` is known and the adapter looks the id up by name. The text
    form (journal, logs, the old ``"name:<runner>"`` strings) is produced by ``str()`` and
    read back by :meth:`parse`, nowhere else.
    """

    forge_id: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.forge_id is not None and not self.forge_id:
            raise ValueError("RunnerRef.forge_id must be None or non-empty")
        if self.forge_id is None and not self.name:
            raise ValueError("RunnerRef needs a forge id or a runner name")

    @classmethod
    def by_name(cls, name: str) -> RunnerRef:
        """A runner known only by its name (its id is not known yet)."""
        return cls(forge_id=None, name=name)

    @classmethod
    def parse(cls, text: str) -> RunnerRef:
        """The inverse of ``str()``: ``"42"`` or ``"name:ro-x-1"``."""
        if text.startswith(_BY_NAME):
            return cls.by_name(text.removeprefix(_BY_NAME))
        return cls(forge_id=text)

    @classmethod
    def of(cls, value: RunnerRef | str) -> RunnerRef:
        """Accept either form (call sites that still pass strings keep working)."""
        return value if isinstance(value, RunnerRef) else cls.parse(value)

    def __str__(self) -> str:
        return self.forge_id if self.forge_id is not None else f"{_BY_NAME}{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class PendingJob:
    """A job waiting for a runner, as the forge reports it."""

    id: str
    scope: str  # GitLab project id/path, GitHub owner/repo
    tags: tuple[str, ...]
    created_at: datetime
    pipeline: str = ""  # GitLab pipeline id, GitHub run id
    name: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class RunnerRequest:
    """Everything a provider needs to register one runner for one pool."""

    name: str  # unique per instance; starts with runner_name_prefix(instance_id)
    pool: str
    labels: tuple[str, ...]  # the pool's labels (GitHub: plus self-hosted/os/arch)
    run_untagged: bool
    ephemeral: bool  # one job, then the container exits
    executor: str = "shell"  # GitLab executor
    executor_args: tuple[str, ...] = ()  # extra run-single flags, e.g. --docker-image
    idle_timeout_s: int = 300  # GitLab --wait-timeout: exit when idle this long
    #: The scope (GitLab project, GitHub ``owner/repo``) of the job this runner is started
    #: for, "" for a warm or manual runner. A forge whose runners serve one repository or
    #: project only registers it there (several scopes and no org/group: see the adapters).
    scope: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """A registered runner and how to start its container.

    ``credential`` is the short-lived runner credential (``glrt-`` token, encoded JIT
    config or registration token). It is NOT in ``command``: the runtime hands it to the
    container in the environment variable ``credential_env`` (directly, or through a
    file read by a tiny wrapper), which the real runner binaries read natively
    (``CI_SERVER_TOKEN`` for ``gitlab-runner``, ``ACTIONS_RUNNER_INPUT_JITCONFIG`` /
    ``ACTIONS_RUNNER_INPUT_TOKEN`` for the actions runner). So ``docker inspect`` shows
    no secret in the command line.
    """

    forge_runner_id: str
    name: str
    command: tuple[str, ...]
    credential: str = dataclasses.field(repr=False)
    credential_env: str
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # non-secret extras


@dataclasses.dataclass(frozen=True, slots=True)
class RunnerActivity:
    """What the forge says a runner is doing right now."""

    forge_runner_id: str
    busy: bool
    current_job: str = ""
    last_job_ended_at: datetime | None = None
    online: bool | None = None
    exists: bool = True  # False: the forge no longer knows it


@dataclasses.dataclass(frozen=True, slots=True)
class ForgeRunner:
    """A runner registration on the forge that this daemon instance created."""

    id: str
    name: str
    online: bool
    busy: bool
    labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookResult:
    """The outcome of an accepted webhook delivery."""

    event: str  # e.g. "workflow_job.queued", "Job Hook pending", "ping"
    nudge: bool  # wake the reconcile loop now
    jobs: tuple[PendingJob, ...] = ()  # jobs the delivery told us about (a hint only)
    finished_job_ids: tuple[str, ...] = ()  # jobs the delivery says are no longer pending


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderHealth:
    """For /status and the metrics: how the provider sees its own budget."""

    rate_limit_remaining: int | None = None
    rate_limit_limit: int | None = None
    poll_interval_s: float | None = None  # effective (stretched) interval, if stretched
    note: str = ""  # e.g. "poll interval stretched: 40 requests left until 12:00Z"
    requests_total: int = 0
    #: Scopes (project path, owner/repo) skipped because the forge refused them (403/404),
    #: with the reason; they are asked again after a backoff, the rest is served.
    scope_errors: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Seconds since the stalest served scope's jobs were last read (None: not yet). A
    #: forge whose demand is older than a few intervals is degraded, not "ok".
    demand_age_s: float | None = None
    #: Scopes whose last poll found more waiting jobs than ``max_jobs_per_scope``: only
    #: that many were read (issue 12.8: a page of 100k jobs was taken whole).
    jobs_capped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Requests sent so far by budget class (``job_poll``, ``webhook``, ``registration``,
    #: ``activity``, ``sweep``) and calls skipped to keep budget for more urgent ones.
    #: Requests one full job-poll round costs with the scopes as they are now (None: not
    #: known yet), and the forge's request budget per minute: the daemon derives how often
    #: it can poll from these (issue 15).
    poll_cost: int | None = None
    budget_per_minute: int | None = None
    requests_by_class: Mapping[str, int] = dataclasses.field(default_factory=dict)
    skipped_by_class: Mapping[str, int] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """**Protocol:** one forge, seen from the daemon. See the module docstring."""

    name: str  # the forge's name from config, e.g. "gitlab"
    kind: ForgeKind

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every job in the configured scopes that waits for a runner."""
        ...

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """Register a runner and return its short-lived credential and start command."""
        ...

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Delete the registration. Raises RunnerBusy to keep it, RunnerNotFound if gone.

        ``force``: the caller is removing the runner's container anyway (it exited, or a
        drain deadline passed): delete even if it is busy, where the forge allows that.
        A forge that refuses outright (GitHub) still raises RunnerBusy.

        ``runner`` may name a runner by name only (:meth:`RunnerRef.by_name`) when it
        registers itself (a reusable GitHub runner) and the daemon has not learnt its id.
        A ``str`` is read with :meth:`RunnerRef.parse`.
        """
        ...

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy/idle for these runners (only ones this instance created), in input order.

        Accepts by-name references like :meth:`unregister_runner`; the answer then carries
        the numeric id once the runner has registered.
        """
        ...

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Registrations on the forge whose name marks them as this instance's."""
        ...

    async def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Verify and parse one delivery. Raises WebhookRejected (4xx) on bad input."""
        ...

    def health(self) -> ProviderHealth:
        """Cheap, in-memory view of rate-limit state; never does I/O."""
        ...

    async def aclose(self) -> None:
        """Release clients and threads."""
        ...


class RunnerOps(Protocol):
    """**Protocol:** an adapter's runner part (its ``runners.py``): the runner methods
    of :class:`Provider`, documented there for each forge."""

    async def register_runner(self, request: RunnerRequest) -> Registration: ...
    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None: ...
    async def runner_activity(
        self, runners: Sequence[RunnerRef | str]
    ) -> Sequence[RunnerActivity]: ...
    async def list_own_runners(self) -> Sequence[ForgeRunner]: ...


class RunnersVia:
    """Mixin for an adapter: :class:`Provider`'s runner methods, each handed to the
    adapter's runner part ``self._runners`` (see :class:`RunnerOps`)."""

    _runners: RunnerOps

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """Register a runner (see the forge's ``runners.py``)."""
        return await self._runners.register_runner(request)

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Delete a registration (see the forge's ``runners.py``)."""
        await self._runners.unregister_runner(runner, force=force)

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy/idle of these runners (see the forge's ``runners.py``)."""
        return await self._runners.runner_activity(runners)

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """This instance's registrations (see the forge's ``runners.py``)."""
        return await self._runners.list_own_runners()


# ---------------------------------------------------------------------------------------
# Options the daemon hands to each adapter (plain data, so providers never import config).


@dataclasses.dataclass(frozen=True, slots=True)
class GitLabOptions:
    """How to reach one GitLab and what to watch there."""

    name: str
    url: str  # e.g. https://gitlab.example.com (no /api/v4)
    token: str = dataclasses.field(repr=False)
    instance_id: str
    projects: tuple[str, ...] = ()  # ids or full paths
    groups: tuple[str, ...] = ()  # ids or full paths; expanded with subgroups
    instance: bool = False  # admin token: GraphQL jobs(statuses: PENDING)
    runner_type: str = ""  # "" = derive from scope (project_type/group_type/instance_type)
    runner_group_id: int | None = None  # group to register group_type runners in
    runner_project_id: int | None = None  # project to register project_type runners in
    requests_per_minute: int = 300  # budget, well under GitLab's 600/min default
    include_created: bool = False  # also count jobs in status "created" as demand
    graphql_poll: bool = False  # pending jobs of up to 100 projects per GraphQL request
    max_jobs_per_scope: int = 1000  # jobs read per project per poll; the rest is counted
    webhook_secret: str = dataclasses.field(default="", repr=False)
    group_refresh_s: float = 300.0
    request_timeout_s: float = 15.0  # connect and per read
    call_deadline_s: float = 60.0  # one whole call, every page included
    min_retry_wait_s: float = 1.0  # every wait GitLab asks for is clamped to this range
    max_retry_wait_s: float = 900.0


@dataclasses.dataclass(frozen=True, slots=True)
class GitHubApp:
    """A GitHub App installation to act as, instead of a token (``GITHUB_APP_*``)."""

    app_id: str
    installation_id: int
    private_key: str = dataclasses.field(repr=False)  # PEM


@dataclasses.dataclass(frozen=True, slots=True)
class GitHubOptions:
    """How to reach one GitHub (or GHES) and what to watch there."""

    name: str
    token: str = dataclasses.field(repr=False)
    instance_id: str
    api_url: str = "https://api.github.com"  # GHES: https://host/api/v3
    web_url: str = "https://github.com"  # for config.sh --url
    repos: tuple[str, ...] = ()  # owner/repo
    orgs: tuple[str, ...] = ()
    runner_group_id: int = 1
    webhook_secret: str = dataclasses.field(default="", repr=False)
    repo_refresh_s: float = 300.0
    low_rate_limit: int = 500  # below this many remaining, stretch the poll interval
    requests_per_minute: int = 600  # pace polls under GitHub's secondary limit (900/min)
    poll_interval_s: float = 15.0  # the daemon's interval, to tell when pacing stretches it
    max_jobs_per_scope: int = 1000  # queued jobs read per repository per poll
    request_timeout_s: float = 15.0  # connect and per read
    call_deadline_s: float = 60.0  # one whole call, every page included
    min_retry_wait_s: float = 1.0  # every wait GitHub asks for is clamped to this range
    max_retry_wait_s: float = 900.0
    app: GitHubApp | None = None  # set: authenticate as this App installation, not ``token``
