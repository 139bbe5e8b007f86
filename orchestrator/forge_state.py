"""One forge's state: its view, its schedule and its pauses, and the bounds they follow.

Split from :mod:`orchestrator.forges`, whose :class:`~orchestrator.forges.ForgeTracker`
owns one :class:`ForgeState` per configured forge, starts its poll task and answers for
all of them. What one forge's state does lives here: when its next poll is due
(:mod:`orchestrator.pollrate`), what an answer does to it (a good one resumes it and
supersedes hints; a failed one pauses it for a clamped wait), when its view is stale, and
how it shows in the snapshot. Its webhook hints are its own
:class:`~orchestrator.forge_hints.HintBook`. The bounds (:class:`ForgeLimits`) and the
deadline every forge call runs under (:func:`within`) are here too, below the tracker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from orchestrator import pollrate
from orchestrator.config import Settings
from orchestrator.forge_hints import HintBook, to_job
from orchestrator.models import ForgeKind, Job
from orchestrator.snapshot import SCOPES_SHOWN, ForgeStatus
from providers.base import PendingJob, Provider
from providers.errors import DeadlineExceeded, ProviderError, TransientProviderError

# The tracker's logger, as before the split: "forge.paused" and "forge.resumed" read the same.
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


@dataclasses.dataclass
class ForgeState:
    """What the daemon remembers about one forge. Owned by the tracker."""

    name: str
    kind: ForgeKind
    provider: Provider
    tracked_since: datetime  # when the tracker began: "no successful poll yet" counts from it
    jobs: list[Job] = dataclasses.field(default_factory=list)
    paused: str = ""
    last_ok_at: datetime | None = None
    retry_at: datetime | None = None
    failures: int = 0
    hints: HintBook = dataclasses.field(default_factory=HintBook)
    task: asyncio.Task[None] | None = None
    next_poll_at: datetime | None = None  # None: due now (or every reconcile)
    active_at: datetime | None = None  # a job seen by a poll or hinted by a webhook
    webhook_at: datetime | None = None  # the last delivery of any kind
    mode: str = ""  # how it is polled and why (for /status)
    interval_s: float | None = None  # the scheduled interval (None: every reconcile)

    # --- schedule ------------------------------------------------------------------------------

    def due(self, now: datetime) -> bool:
        if self.paused:
            return self.retry_at is None or now >= self.retry_at
        return self.next_poll_at is None or now >= self.next_poll_at

    def schedule(self, limits: ForgeLimits, now: datetime) -> None:
        """When to poll the forge next, and the words for /status."""
        health = self.provider.health()
        if health.poll_cost is None and not self._webhooks_arrive(now):
            self.next_poll_at, self.mode, self.interval_s = None, "every reconcile", None
            return
        chosen = pollrate.plan(
            poll_cost=health.poll_cost,
            budget_per_minute=health.budget_per_minute,
            ceiling_s=limits.poll_interval_s,
            activity_age_s=_age(now, self.active_at),
            webhook_age_s=_age(now, self.webhook_at),
        )
        interval = max(chosen.interval_s, health.poll_interval_s or 0.0)
        self.next_poll_at = now + timedelta(seconds=interval)
        self.mode, self.interval_s = chosen.mode, interval

    def _webhooks_arrive(self, now: datetime) -> bool:
        age = _age(now, self.webhook_at)
        return age is not None and age < pollrate.WEBHOOK_FRESH_S

    # --- answers -------------------------------------------------------------------------------

    def succeeded(self, pending: Sequence[PendingJob], started: datetime, now: datetime) -> None:
        """A poll started at ``started`` answered: take its view, resume, drop the hints it
        read (see :meth:`~orchestrator.forge_hints.HintBook.supersede`)."""
        if self.paused:
            log.info("forge.resumed", forge=self.name)
        self.jobs = [to_job(self.name, p) for p in pending]
        self.paused = ""
        self.failures = 0
        self.retry_at = None
        self.last_ok_at = now
        if pending:
            self.active_at = now
        demand_age_s = self.provider.health().demand_age_s
        read_all_since = None if demand_age_s is None else now - timedelta(seconds=demand_age_s)
        self.hints.supersede(self.jobs, started, read_all_since)

    def failed(self, exc: ProviderError, limits: ForgeLimits, now: datetime) -> None:
        """Back off, but never past one poll interval: recovery is due within one (a
        longer ``Retry-After`` the forge sent wins, clamped)."""
        self.failures += 1
        wait = min(limits.poll_interval_s, 2.0 ** min(self.failures, 8))
        if isinstance(exc, TransientProviderError) and exc.retry_after:
            wait = max(wait, limits.clamp_wait(exc.retry_after, wait))
        self.pause(f"{type(exc).__name__}: {exc}", wait, now)

    def pause(self, reason: str, wait_s: float, now: datetime) -> None:
        if self.paused != reason:
            log.warning("forge.paused", forge=self.name, reason=reason, retry_in_s=wait_s)
        self.paused = reason
        self.retry_at = now + timedelta(seconds=wait_s)

    # --- views ---------------------------------------------------------------------------------

    def interval(self, limits: ForgeLimits) -> float:
        """The forge's current poll interval (scheduled, or stretched by the provider)."""
        stretched = self.provider.health().poll_interval_s
        if self.interval_s is None:
            return stretched or limits.poll_interval_s
        return max(self.interval_s, stretched or 0.0)

    def stale(self, limits: ForgeLimits, now: datetime) -> str:
        """Why the forge's view is too old to trust, or ''. Measured in ``POLL_INTERVAL``s
        (or the provider's stretched or budget-bound interval when longer), not in the
        fast interval: a fast poll late by a few seconds is not a stale view."""
        ceiling = max(self.interval(limits), limits.poll_interval_s)
        limit = timedelta(seconds=limits.stale_after_polls * ceiling)
        since = self.last_ok_at or self.tracked_since
        if now - since <= limit:
            # A poll answered, but a provider serving part of its scopes a round (budget)
            # may still hold a scope's answer from long ago: that is a stale view too.
            oldest = self.provider.health().demand_age_s
            if oldest is not None and oldest > limit.total_seconds():
                return f"the stalest project/repository was read {oldest:.0f}s ago"
            return ""
        if self.last_ok_at is None:
            return "no successful poll yet"
        age = (now - self.last_ok_at).total_seconds()
        return f"last successful poll {age:.0f}s ago"

    def view(self, limits: ForgeLimits, now: datetime) -> tuple[frozenset[str], str, bool]:
        """What a changed answer means for a reconcile: its jobs, pause and staleness."""
        return frozenset(j.key for j in self.jobs), self.paused, bool(self.stale(limits, now))

    def status(self, limits: ForgeLimits, now: datetime) -> ForgeStatus:
        """The forge for the snapshot (``pending_jobs`` is filled in from the plan)."""
        health = self.provider.health()
        return ForgeStatus(
            name=self.name,
            kind=self.kind.value,
            paused=bool(self.paused),
            error=self.paused,
            last_ok_at=self.last_ok_at,
            pending_jobs=0,
            poll_interval_s=self.interval(limits),
            rate_limit_remaining=health.rate_limit_remaining,
            note=health.note,
            retry_at=self.retry_at if self.paused else None,
            stale=self.stale(limits, now),
            scope_errors=tuple(sorted(health.scope_errors.items())[:SCOPES_SHOWN]),
            scope_error_count=len(health.scope_errors),
            jobs_capped=tuple(sorted(health.jobs_capped.items())[:SCOPES_SHOWN]),
            jobs_capped_count=len(health.jobs_capped),
            poll_mode=self.mode,
        )
