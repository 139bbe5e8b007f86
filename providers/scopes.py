"""Polling many scopes (GitLab projects, GitHub repositories) on one budget.

Both adapters poll the same way, so it lives here once:

* a poll covers as many scopes as the job-poll budget allows, stalest first, and keeps
  the last answer of every other scope, so the demand stays complete (the job poll is
  never starved because every other kind of request leaves it headroom: see
  :mod:`providers.budget`);
* a scope that answers 403 or 404 is *skipped*, not the forge: its reason is kept for
  ``health().scope_errors`` and, after one more try the next round, it is asked again
  after a backoff that doubles (30 s, 1 min, ... 1 h) while the rest is served (11.4).
  Only when *every* scope refuses is the token itself checked; a failed identity check
  pauses the forge;
* a rate limit or an auth error fails the whole poll (the forge must wait); a transient
  error of one scope keeps its previous answer, and fails the poll only if every scope
  polled this round failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence

from providers.base import PendingJob
from providers.budget import Budget, Priority
from providers.errors import (
    AccessDenied,
    HTTPStatusError,
    NotFound,
    ProviderAuthError,
    RateLimited,
    TransientProviderError,
)

Clock = Callable[[], float]


@dataclasses.dataclass
class _Scope:
    jobs: list[PendingJob] = dataclasses.field(default_factory=list)
    polled_at: float = float("-inf")
    error: str = ""
    retry_at: float = float("-inf")
    strikes: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PollRound:
    """What one poll did: for notes and tests."""

    polled: int  # scopes asked this round
    due: int  # scopes that were due (not in a refusal backoff)
    total: int
    refused: int


class ScopeBook:
    """Per-scope answers, ages and refusals of one provider."""

    def __init__(self, clock: Clock, *, retry_base_s: float = 30.0, retry_max_s: float = 3600.0):
        self._clock = clock
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._scopes: dict[str, _Scope] = {}
        self.labels: dict[str, str] = {}  # key -> what /status shows (path, owner/repo)

    def demand_age(self) -> float | None:
        """Seconds since the stalest served scope was answered (None: one never was).

        Refused scopes do not count (they are reported on their own); a stale view is
        what ``/ready`` must not call "ok"."""
        served = [s.polled_at for s in self._scopes.values() if not s.error]
        if not served:
            return None
        oldest = min(served)
        return None if oldest == float("-inf") else self._clock() - oldest

    def sync(self, keys: Sequence[str]) -> None:
        """Forget scopes that are no longer configured (or left a group/org)."""
        for gone in set(self._scopes) - set(keys):
            del self._scopes[gone]
            self.labels.pop(gone, None)
        for key in keys:
            self._scopes.setdefault(key, _Scope())

    def due(self, keys: Sequence[str]) -> list[str]:
        """Scopes that may be polled now, stalest first (refused ones after backoff)."""
        now = self._clock()
        ready = [k for k in keys if self._scopes[k].retry_at <= now]
        return sorted(ready, key=lambda k: self._scopes[k].polled_at)

    def answered(self, key: str, jobs: list[PendingJob]) -> None:
        scope = self._scopes[key]
        scope.jobs, scope.polled_at, scope.error, scope.strikes = jobs, self._clock(), "", 0
        scope.retry_at = float("-inf")

    def refused(self, key: str, reason: str) -> None:
        """403/404: drop its jobs (they are not demand we can serve) and back off."""
        scope = self._scopes[key]
        scope.strikes += 1
        # The first refusal is asked again next round (a repository that is just being
        # created, a permission being granted); from the second on, back off.
        wait = (
            0.0
            if scope.strikes == 1
            else min(self._retry_base_s * 2 ** min(scope.strikes - 2, 16), self._retry_max_s)
        )
        now = self._clock()
        scope.jobs, scope.polled_at, scope.error, scope.retry_at = [], now, reason, now + wait

    def jobs(self, keys: Sequence[str]) -> list[PendingJob]:
        return [job for key in keys for job in self._scopes[key].jobs]

    def errors(self) -> dict[str, str]:
        """``{scope: reason}`` for every scope currently skipped."""
        return {self.labels.get(k, k): s.error for k, s in self._scopes.items() if s.error}

    def all_refused(self, keys: Sequence[str]) -> bool:
        return bool(keys) and all(self._scopes[k].error for k in keys)


async def poll_scopes(
    book: ScopeBook,
    keys: Sequence[str],
    poll_one: Callable[[str], Awaitable[list[PendingJob]]],
    budget: Budget,
    *,
    cost_per_scope: int = 1,
    verify_identity: Callable[[], Awaitable[None]] | None = None,
    only: Collection[str] | None = None,
) -> PollRound:
    """Poll what the budget allows (see the module docstring); answers go into ``book``.

    ``only``: poll just these of ``keys`` (another poll, e.g. GraphQL, answered the rest).
    """
    book.sync(keys)
    due = [k for k in book.due(keys) if only is None or k in only]
    room = budget.available(Priority.JOB_POLL) // max(1, cost_per_scope)
    batch = due[:room]
    outcomes = await asyncio.gather(*(poll_one(k) for k in batch), return_exceptions=True)
    must_wait: BaseException | None = None
    transient: list[TransientProviderError] = []
    refused = 0
    for key, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, list):
            book.answered(key, outcome)
        elif isinstance(outcome, AccessDenied | NotFound):
            book.refused(key, str(outcome))
            refused += 1
        elif isinstance(outcome, RateLimited | ProviderAuthError):
            must_wait = must_wait or outcome
        elif isinstance(outcome, TransientProviderError):
            transient.append(outcome)
        elif isinstance(outcome, HTTPStatusError):  # e.g. 400/410 on one scope
            book.refused(key, str(outcome))
            refused += 1
        elif isinstance(outcome, BaseException):
            raise outcome  # a bug, or an error kind this poll does not know
    if must_wait is not None:
        raise must_wait
    if batch and len(transient) == len(batch):
        raise transient[0]
    if refused and verify_identity is not None and book.all_refused(keys):
        await verify_identity()  # raises ProviderAuthError if the token itself is bad
    return PollRound(polled=len(batch), due=len(due), total=len(keys), refused=refused)


def pacing(
    done: PollRound, budget: Budget, noun: str, cost_per_scope: int = 1, interval_s: float = 0.0
) -> tuple[float | None, str]:
    """``(seconds to poll every scope once, note)`` when the budget, not the daemon's own
    ``interval_s``, sets how often each scope is polled."""
    every = done.due * max(1, cost_per_scope) / budget.rate
    if done.polled >= done.due or every <= interval_s:
        return None, ""
    note = (
        f"polled {done.polled} of {done.due} {noun} this round "
        f"({budget.per_minute} requests/min budget; each is polled every ~{every:.0f}s)"
    )
    return every, note
