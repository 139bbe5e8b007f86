"""Backoff books: per pool (spawn failures) and per runner (unregistration retries).

Both are small, clock-driven and pure (no I/O), so the lifecycle's rules about *when* to
try again are testable on their own and every wait is capped.

A pool's spawn backoff is a circuit breaker: each failure (register, create, start, or a
container that dies early) doubles its wait up to a cap. When the wait is over the pool
is *on probation*: one runner may start; the streak ends only when a runner started
after the streak began proves itself (took a job, or lived past the early-exit window).
A mere successful ``docker start`` proves nothing: a broken runner starts fine and then
exits, and clearing on start is what made the spawn storm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

from orchestrator.models import CreateRequest, Runner

#: First spawn-backoff wait and its cap (seconds).
SPAWN_BACKOFF_BASE_S = 2.0
SPAWN_BACKOFF_MAX_S = 300.0
#: Unregistration retries: first wait, cap, and attempts before only the sweep retries.
RETRY_BASE_S = 10.0
RETRY_MAX_S = 900.0
RETRY_ATTEMPTS = 6


@dataclasses.dataclass
class PoolStreak:
    """One pool's current run of spawn failures."""

    since: datetime  # first failure of the streak
    until: datetime  # no new runner before this
    failures: int
    reason: str


class SpawnBackoff:
    """Per-pool spawn failures with capped exponential backoff and a probation probe."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        base_s: float = SPAWN_BACKOFF_BASE_S,
        max_s: float = SPAWN_BACKOFF_MAX_S,
    ) -> None:
        self.clock = clock
        self.base_s = base_s
        self.max_s = max_s
        self._pools: dict[str, PoolStreak] = {}

    def failed(self, pool: str, reason: str) -> float:
        """Count a failure; returns the wait (seconds) before the pool may spawn again."""
        now = self.clock()
        streak = self._pools.get(pool)
        failures = streak.failures + 1 if streak else 1
        wait = min(self.max_s, self.base_s**failures)
        since = streak.since if streak else now
        self._pools[pool] = PoolStreak(since, now + timedelta(seconds=wait), failures, reason)
        return wait

    def proven(self, pool: str, started_at: datetime | None) -> None:
        """A runner of ``pool`` started at ``started_at`` took a job or outlived the window:
        the streak ends if that runner was started after the streak began."""
        streak = self._pools.get(pool)
        if streak is not None and started_at is not None and started_at >= streak.since:
            del self._pools[pool]

    def unavailable(self, pool: str) -> str:
        """Why the pool may not spawn now ('' when it may)."""
        streak = self._pools.get(pool)
        if streak is None or self.clock() >= streak.until:
            return ""
        return f"spawn failing, retry after {streak.until:%H:%M:%S}: {streak.reason}"

    def on_probation(self, pool: str) -> datetime | None:
        """When the pool's streak began, if it has one whose wait is over (one probe runner
        at a time); else None."""
        streak = self._pools.get(pool)
        if streak is None or self.clock() < streak.until:
            return None
        return streak.since

    def limit_probes(
        self, creates: Sequence[CreateRequest], active: Sequence[Runner]
    ) -> list[CreateRequest]:
        """Cut the plan's creates so a pool on probation starts one runner at a time (none
        while an earlier probe, created after the streak began, has not proved itself);
        other pools' requests pass unchanged."""
        out = []
        room: dict[str, int] = {}
        for request in creates:
            since = self.on_probation(request.pool)
            if since is None:
                out.append(request)
                continue
            if request.pool not in room:
                probing = any(r.pool == request.pool and r.created_at >= since for r in active)
                room[request.pool] = 0 if probing else 1
            allowed = min(request.count, room[request.pool])
            if allowed > 0:
                room[request.pool] -= allowed
                out.append(dataclasses.replace(request, count=allowed))
        return out

    def streak(self, pool: str) -> PoolStreak | None:
        return self._pools.get(pool)


@dataclasses.dataclass(frozen=True)
class Retry:
    """A runner whose forge registration could not be deleted yet."""

    attempts: int
    next_at: datetime | None  # None: only the sweep retries it now
    reason: str


class RetryBook:
    """Per-key retries with capped exponential backoff; after ``attempts`` failures only
    an explicit sweep (``due(..., sweep=True)``) tries again."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        base_s: float = RETRY_BASE_S,
        max_s: float = RETRY_MAX_S,
        attempts: int = RETRY_ATTEMPTS,
    ) -> None:
        self.clock = clock
        self.base_s = base_s
        self.max_s = max_s
        self.attempts = attempts
        self._book: dict[str, Retry] = {}

    def due(self, key: str, *, sweep: bool = False) -> bool:
        entry = self._book.get(key)
        if entry is None or sweep:
            return True
        return entry.next_at is not None and self.clock() >= entry.next_at

    def failed(self, key: str, reason: str) -> Retry:
        previous = self._book.get(key)
        attempts = previous.attempts + 1 if previous else 1
        next_at: datetime | None = None
        if attempts < self.attempts:
            wait = min(self.max_s, self.base_s * 2.0 ** (attempts - 1))
            next_at = self.clock() + timedelta(seconds=wait)
        entry = Retry(attempts, next_at, reason)
        self._book[key] = entry
        return entry

    def done(self, key: str) -> None:
        self._book.pop(key, None)

    def get(self, key: str) -> Retry | None:
        return self._book.get(key)

    def __iter__(self) -> Iterator[tuple[str, Retry]]:
        return iter(list(self._book.items()))

    def __len__(self) -> int:
        return len(self._book)
