"""The forge tracker: what each forge wants (its pending jobs), polled independently.

One :class:`ForgeState` per configured forge holds everything the daemon remembers about
that forge between reconciles: its last job list, whether it is paused and until when,
its webhook hints, and the poll in flight. Nothing else in the daemon keeps forge state.

Rules this module enforces:

* **Each forge on its own schedule** (issue 15). How often a forge is polled is derived
  from its budget and recent activity (:mod:`orchestrator.pollrate`: *fast* after a job
  was seen, *idle* otherwise, a *webhook safety-net* at ``POLL_INTERVAL`` while
  deliveries arrive), never slower than ``POLL_INTERVAL``. The scheduler calls
  :meth:`ForgeTracker.tick` every second; it starts the polls that are due, and a poll
  whose answer changed the forge's view nudges a reconcile. A reconcile's own
  :meth:`ForgeTracker.poll` starts only due polls too, so a burst of webhook nudges costs
  no forge requests. A provider that does not say what a round costs (``poll_cost``) is
  polled every reconcile, as before.
* **Independent polls.** Each forge's poll is its own task under an overall deadline
  (``call_timeout_s``). A reconcile waits for the polls at most ``poll_grace_s``; a forge
  still answering after that keeps its previous view for this reconcile and nudges
  another one when its answer lands. So a slow or trickling forge never delays another
  forge, nor the Docker side.
* **Every wait is clamped.** A ``Retry-After`` (or any wait a forge asks for) is clamped
  to ``[wait_min_s, wait_max_s]``; a non-finite one counts as the maximum.
* **Pauses.** An auth failure pauses the forge for ``max(60 s, poll interval)`` (a bad
  token is not retried faster than once a minute); a rate limit for its clamped
  ``Retry-After`` (else one interval); any other error backs off exponentially but never
  past one interval (plus a longer ``Retry-After`` if the forge sent one).
* **A stale view is never ok.** A forge whose last successful poll is older than
  ``stale_after_polls`` intervals is *stale*: reported in the snapshot and on ``/ready``.
* **One hint layer.** A webhook's job (or "finished") is a hint kept until a poll that
  evidently read its scope supersedes it (see :meth:`ForgeTracker._succeeded`), and
  never longer than ``hint_ttl_s`` nor more than ``hint_max`` per forge (oldest first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog

from orchestrator import pollrate
from orchestrator.config import Settings
from orchestrator.metrics import Metrics
from orchestrator.models import ForgeKind, Job
from orchestrator.snapshot import SCOPES_SHOWN, ForgeStatus
from providers.base import PendingJob, Provider, WebhookResult
from providers.errors import (
    DeadlineExceeded,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    TransientProviderError,
)

log = structlog.get_logger("orchestrator.forges")

T = TypeVar("T")

#: A bad token is retried at most this often, whatever the poll interval.
AUTH_PAUSE_MIN_S = 60.0
#: The shortest wait a forge may ask for (shared by the tracker and the providers).
WAIT_MIN_S = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class ForgeLimits:
    """Every bound the tracker applies (from Settings; tests shrink them)."""

    poll_interval_s: float
    call_timeout_s: float = 30.0  # overall deadline of one forge call (a whole poll)
    poll_grace_s: float = 5.0  # how long one reconcile waits for polls still running
    wait_min_s: float = WAIT_MIN_S  # clamp of any wait a forge asks for (Retry-After)
    wait_max_s: float = 900.0
    stale_after_polls: float = 3.0
    hint_ttl_s: float = 600.0
    hint_max: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> ForgeLimits:
        """The daemon's bounds: a reconcile waits for slow polls at most min(5 s, interval);
        a webhook hint no poll confirmed lives five intervals (at least 2 min)."""
        return cls(
            poll_interval_s=settings.poll_interval,
            call_timeout_s=settings.forge_call_timeout,
            poll_grace_s=min(settings.forge_call_timeout, settings.poll_interval, 5.0),
            wait_max_s=settings.forge_retry_after_max,
            hint_ttl_s=max(120.0, 5 * settings.poll_interval),
        )

    @property
    def auth_pause_s(self) -> float:
        return max(AUTH_PAUSE_MIN_S, self.poll_interval_s)

    def clamp_wait(self, seconds: float | None, default: float) -> float:
        """A wait the forge asked for, clamped; ``default`` when it named none (or NaN)."""
        if seconds is None or math.isnan(seconds):
            return default
        if math.isinf(seconds):
            return self.wait_max_s if seconds > 0 else self.wait_min_s
        return min(self.wait_max_s, max(self.wait_min_s, seconds))


def provider_deadline(call_timeout_s: float) -> float:
    """The provider's own overall deadline for one call, set from ``FORGE_CALL_TIMEOUT``:
    slightly under the tracker's (10 %, at most 2 s), so the provider's deadline fires
    first and ends its requests cleanly; the tracker's stays the backstop for any
    adapter. One setting feeds both layers."""
    return max(call_timeout_s * 0.9, call_timeout_s - 2.0)


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


class ForgeDeadline(DeadlineExceeded):
    """The daemon's own deadline on a forge call passed (the adapter's own deadline, if
    any, should fire first; this one holds for any adapter)."""


async def within(seconds: float, request: Awaitable[T]) -> T:
    """``request`` under an overall deadline; :class:`ForgeDeadline` when it passes."""
    try:
        return await asyncio.wait_for(request, seconds)
    except TimeoutError as exc:
        raise ForgeDeadline(f"no answer within {seconds:.0f}s") from exc


def to_job(forge: str, job: PendingJob) -> Job:
    """A provider's pending job as the planner's :class:`Job` (naive times taken as UTC)."""
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return Job(
        forge=forge,
        id=job.id,
        scope=job.scope,
        tags=frozenset(job.tags),
        created_at=created,
        pipeline=job.pipeline,
        name=job.name,
    )


@dataclasses.dataclass
class ForgeState:
    """What the daemon remembers about one forge. Owned by :class:`ForgeTracker`."""

    name: str
    kind: ForgeKind
    provider: Provider
    jobs: list[Job] = dataclasses.field(default_factory=list)
    paused: str = ""
    last_ok_at: datetime | None = None
    retry_at: datetime | None = None
    failures: int = 0
    #: job key -> (job, when the hint arrived); insertion order = age order.
    hints: dict[str, tuple[Job, datetime]] = dataclasses.field(default_factory=dict)
    #: job key -> when a webhook said it no longer waits.
    finished: dict[str, datetime] = dataclasses.field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    next_poll_at: datetime | None = None  # None: due now (or every reconcile)
    active_at: datetime | None = None  # a job seen by a poll or hinted by a webhook
    webhook_at: datetime | None = None  # the last delivery of any kind
    mode: str = ""  # how it is polled and why (for /status)
    interval_s: float | None = None  # the scheduled interval (None: every reconcile)


class ForgeTracker:
    """Polls every forge, pauses and resumes them, and answers :meth:`demand`."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        limits: ForgeLimits,
        metrics: Metrics,
        clock: Callable[[], datetime],
        nudge: Callable[[], None] = lambda: None,
    ) -> None:
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self.nudge = nudge
        self.forges: dict[str, ForgeState] = {
            name: ForgeState(name=name, kind=ForgeKind(p.kind), provider=p)
            for name, p in providers.items()
        }
        self._waiting = False
        self._started_at = clock()

    # --- polling -----------------------------------------------------------------------------

    async def poll(self, *, force: bool = False, wait_s: float | None = None) -> None:
        """Start a poll of every forge that is due, then wait for them up to ``wait_s``
        (default ``poll_grace_s``). ``force``: poll paused forges too and wait for all.

        A poll still running afterwards keeps going (under its own deadline); its result
        is used by the next reconcile, which it nudges. An exception that is not a
        :class:`ProviderError` is a bug: it is raised here, never turned into a pause.
        """
        self._start_due(force=force, pending_too=True)
        tasks = [f.task for f in self.forges.values() if f.task is not None]
        if not tasks:
            return
        if force:
            wait_s = self.limits.call_timeout_s + 1.0
        self._waiting = True
        try:
            await asyncio.wait(
                tasks, timeout=self.limits.poll_grace_s if wait_s is None else wait_s
            )
        finally:
            self._waiting = False
        self._reap()

    def tick(self) -> None:
        """Start the polls that are due now, without waiting for them (the scheduler calls
        this every second). A poll that changes what the forge wants nudges a reconcile."""
        self._reap()
        self._start_due(force=False)

    def _due(self, forge: ForgeState, now: datetime) -> bool:
        if forge.paused:
            return forge.retry_at is None or now >= forge.retry_at
        return forge.next_poll_at is None or now >= forge.next_poll_at

    def _start_due(self, *, force: bool, pending_too: bool = False) -> None:
        """``pending_too`` (a reconcile): also poll a forge whose view lists waiting jobs,
        due or not. The reconcile is about to spawn for them, and a nudge (a runner's
        container exited: its job may be done) means the view may be out of date; spawning
        from it made a second runner for a finished job."""
        now = self.clock()
        for forge in self.forges.values():
            fresh = pending_too and bool(forge.jobs) and not forge.paused
            if (force or fresh or self._due(forge, now)) and forge.task is None:
                forge.task = asyncio.create_task(self._poll(forge), name=f"poll-{forge.name}")

    def _reap(self) -> None:
        for forge in self.forges.values():
            task = forge.task
            if task is not None and task.done():
                forge.task = None
                task.result()  # re-raises a bug in the provider or in this module

    def _view(self, forge: ForgeState) -> tuple[frozenset[str], str, bool]:
        return frozenset(j.key for j in forge.jobs), forge.paused, bool(self.stale(forge))

    def _schedule(self, forge: ForgeState) -> None:
        """When to poll the forge next, and the words for /status."""
        health = forge.provider.health()
        now = self.clock()
        if health.poll_cost is None and not self._webhooks_arrive(forge, now):
            forge.next_poll_at, forge.mode, forge.interval_s = None, "every reconcile", None
            return
        chosen = pollrate.plan(
            poll_cost=health.poll_cost,
            budget_per_minute=health.budget_per_minute,
            ceiling_s=self.limits.poll_interval_s,
            activity_age_s=_age(now, forge.active_at),
            webhook_age_s=_age(now, forge.webhook_at),
        )
        interval = max(chosen.interval_s, health.poll_interval_s or 0.0)
        forge.next_poll_at = now + timedelta(seconds=interval)
        forge.mode, forge.interval_s = chosen.mode, interval

    def _webhooks_arrive(self, forge: ForgeState, now: datetime) -> bool:
        age = _age(now, forge.webhook_at)
        return age is not None and age < pollrate.WEBHOOK_FRESH_S

    async def _poll(self, forge: ForgeState) -> None:
        started = self.clock()
        before = self._view(forge)
        try:
            pending = await self.call(forge.provider.pending_jobs())
        except DeadlineExceeded as exc:
            self._failed(forge, exc, "timeout")
        except ProviderAuthError as exc:
            self.auth_failed(forge.name, exc)
        except RateLimited as exc:
            wait = self.limits.clamp_wait(exc.retry_after, self.limits.poll_interval_s)
            self._pause(forge, f"rate limited; retrying in {wait:.0f}s", wait)
            self.metrics.forge_errors.labels(forge.name, "rate_limited").inc()
        except ProviderError as exc:
            self._failed(forge, exc, "error")
        else:
            self._succeeded(forge, pending, started)
        self._schedule(forge)
        if not self._waiting and self._view(forge) != before:
            self.nudge()  # a late or scheduled answer that changed the view: use it now

    def _succeeded(
        self, forge: ForgeState, pending: Sequence[PendingJob], started: datetime
    ) -> None:
        if forge.paused:
            log.info("forge.resumed", forge=forge.name)
        forge.jobs = [to_job(forge.name, p) for p in pending]
        forge.paused = ""
        forge.failures = 0
        forge.retry_at = None
        forge.last_ok_at = self.clock()
        if pending:
            forge.active_at = forge.last_ok_at
        # A poll supersedes a hint only where it evidently read the hint's scope: the job
        # is in its answer (the poll's view takes over), or the poll started after the
        # hint and answered other jobs of that scope but not this one. A provider may skip
        # or serve from cache a scope it did not read this time (budget, a refused repo),
        # so "any later poll" is not proof; age and count bound what is left.
        polled = {j.key for j in forge.jobs}
        read = {j.scope for j in forge.jobs}
        forge.hints = {
            k: (job, at)
            for k, (job, at) in forge.hints.items()
            if k not in polled and not (at < started and job.scope in read)
        }
        # A "finished" mark is needed only while a poll still lists the job.
        forge.finished = {k: at for k, at in forge.finished.items() if k in polled}

    def _failed(self, forge: ForgeState, exc: ProviderError, kind: str) -> None:
        forge.failures += 1
        # Back off, but never past one poll interval: recovery is due within one.
        wait = min(self.limits.poll_interval_s, 2.0 ** min(forge.failures, 8))
        if isinstance(exc, TransientProviderError) and exc.retry_after:
            wait = max(wait, self.limits.clamp_wait(exc.retry_after, wait))
        self._pause(forge, f"{type(exc).__name__}: {exc}", wait)
        self.metrics.forge_errors.labels(forge.name, kind).inc()

    def auth_failed(self, name: str, exc: ProviderAuthError) -> None:
        """The forge refused our token (on a poll or a registration): pause it."""
        forge = self.forges[name]
        self._pause(forge, f"authentication failed: {exc}", self.limits.auth_pause_s)
        self.metrics.forge_errors.labels(forge.name, "auth").inc()

    def _pause(self, forge: ForgeState, reason: str, wait_s: float) -> None:
        if forge.paused != reason:
            log.warning("forge.paused", forge=forge.name, reason=reason, retry_in_s=wait_s)
        forge.paused = reason
        forge.retry_at = self.clock() + timedelta(seconds=wait_s)

    async def call(self, request: Awaitable[T]) -> T:
        """Await one forge request (register, unregister, activity...) under the deadline."""
        return await within(self.limits.call_timeout_s, request)

    async def aclose(self) -> None:
        """Cancel polls still in flight (shutdown)."""
        tasks = [f.task for f in self.forges.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for forge in self.forges.values():
            forge.task = None

    # --- webhooks ------------------------------------------------------------------------------

    def on_webhook(self, name: str, result: WebhookResult) -> None:
        """Remember what a delivery told us until a later poll supersedes it."""
        forge = self.forges.get(name)
        if forge is None:
            return
        now = self.clock()
        forge.webhook_at = now
        if result.jobs:
            forge.active_at = now
        for pending in result.jobs:
            job = to_job(name, pending)
            forge.hints.pop(job.key, None)  # re-insert: newest last
            forge.hints[job.key] = (job, now)
        for job_id in result.finished_job_ids:
            key = f"{name}:{job_id}"
            forge.finished.pop(key, None)
            forge.finished[key] = now
            forge.hints.pop(key, None)
        self._bound_hints(forge, now)

    def _bound_hints(self, forge: ForgeState, now: datetime) -> None:
        oldest = now - timedelta(seconds=self.limits.hint_ttl_s)
        forge.hints = {k: v for k, v in forge.hints.items() if v[1] > oldest}
        forge.finished = {k: v for k, v in forge.finished.items() if v > oldest}
        for book in (forge.hints, forge.finished):
            for key in list(book)[: max(0, len(book) - self.limits.hint_max)]:
                del book[key]

    # --- answers -------------------------------------------------------------------------------

    def demand(self) -> list[Job]:
        """Every pending job: last polls, minus webhook "finished", plus webhook hints."""
        now = self.clock()
        jobs: dict[str, Job] = {}
        for forge in self.forges.values():
            self._bound_hints(forge, now)
            for job in forge.jobs:
                if job.key not in forge.finished:
                    jobs[job.key] = job
            for key, (job, _at) in forge.hints.items():
                jobs.setdefault(key, job)
        return list(jobs.values())

    def provider(self, name: str) -> Provider | None:
        forge = self.forges.get(name)
        return None if forge is None else forge.provider

    def is_paused(self, name: str) -> bool:
        forge = self.forges.get(name)
        return forge is not None and bool(forge.paused)

    def paused(self) -> dict[str, str]:
        """Paused forges and why (the planner lets their jobs wait with ``forge_paused``)."""
        return {f.name: f.paused for f in self.forges.values() if f.paused}

    def unusable(self) -> dict[str, str]:
        """Forges the planner must leave alone (paused, or a view too old) and why."""
        out = self.paused()
        for forge in self.forges.values():
            stale = self.stale(forge)
            if stale and forge.name not in out:
                out[forge.name] = f"view too old: {stale}"
        return out

    def interval(self, forge: ForgeState) -> float:
        """The forge's current poll interval (scheduled, or stretched by the provider)."""
        stretched = forge.provider.health().poll_interval_s
        if forge.interval_s is None:
            return stretched or self.limits.poll_interval_s
        return max(forge.interval_s, stretched or 0.0)

    def stale(self, forge: ForgeState) -> str:
        """Why the forge's view is too old to trust, or ''. Measured in ``POLL_INTERVAL``s
        (or the provider's stretched or budget-bound interval when longer), not in the
        fast interval: a fast poll late by a few seconds is not a stale view."""
        now = self.clock()
        ceiling = max(self.interval(forge), self.limits.poll_interval_s)
        limit = timedelta(seconds=self.limits.stale_after_polls * ceiling)
        since = forge.last_ok_at or self._started_at
        if now - since <= limit:
            # A poll answered, but a provider serving part of its scopes a round (budget)
            # may still hold a scope's answer from long ago: that is a stale view too.
            oldest = forge.provider.health().demand_age_s
            if oldest is not None and oldest > limit.total_seconds():
                return f"the stalest project/repository was read {oldest:.0f}s ago"
            return ""
        if forge.last_ok_at is None:
            return "no successful poll yet"
        age = (now - forge.last_ok_at).total_seconds()
        return f"last successful poll {age:.0f}s ago"

    def degraded(self) -> list[str]:
        """Forges that are paused or stale (a reconcile with any of them is not "ok")."""
        return [f.name for f in self.forges.values() if f.paused or self.stale(f)]

    def statuses(self) -> list[ForgeStatus]:
        """Each forge for the snapshot (``pending_jobs`` is filled in from the plan)."""
        out = []
        for forge in self.forges.values():
            health = forge.provider.health()
            out.append(
                ForgeStatus(
                    name=forge.name,
                    kind=forge.kind.value,
                    paused=bool(forge.paused),
                    error=forge.paused,
                    last_ok_at=forge.last_ok_at,
                    pending_jobs=0,
                    poll_interval_s=self.interval(forge),
                    rate_limit_remaining=health.rate_limit_remaining,
                    note=health.note,
                    retry_at=forge.retry_at if forge.paused else None,
                    stale=self.stale(forge),
                    scope_errors=tuple(sorted(health.scope_errors.items())[:SCOPES_SHOWN]),
                    scope_error_count=len(health.scope_errors),
                    jobs_capped=tuple(sorted(health.jobs_capped.items())[:SCOPES_SHOWN]),
                    jobs_capped_count=len(health.jobs_capped),
                    poll_mode=forge.mode,
                )
            )
        return out

    def report(self) -> list[dict[str, object]]:
        """Each forge's last poll for ``runner-orchestrator plan``."""
        return [
            {"name": f.name, "kind": f.kind.value, "pending": len(f.jobs), "error": f.paused}
            for f in self.forges.values()
        ]
