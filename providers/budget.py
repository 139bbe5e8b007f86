"""One request budget per forge, with priorities, and the forge's own "wait" orders.

Every request a provider sends is charged here (by the transport in
:mod:`providers.http`), whatever it is for: a job poll, a page of a list, a registration,
an activity check, a sweep, a conditional GET answered ``304`` (GitHub's secondary limit
counts those too). Before a *call* starts it is admitted by priority:

=================  ===========================  ==========================================
priority           starts when the bucket has   when it is short
=================  ===========================  ==========================================
``JOB_POLL``       one request                  waits up to 10 s
``WEBHOOK``        one request                  waits up to 2 s (inside a delivery)
``REGISTRATION``   a tenth of the burst left    waits up to 5 s
``ACTIVITY``       a quarter of the burst left  skipped: :class:`BudgetShort`
``SWEEP``          half of the burst left       skipped: :class:`BudgetShort`
=================  ===========================  ==========================================

So activity checks and sweeps can only ever spend the *top* of the bucket, and a waiting
higher-priority call also holds back every lower one: the job poll always gets its share
(issue 11.2: 12 busy runners used to starve it). A poll of many scopes asks only for as
many as the bucket holds (:func:`providers.scopes.poll_scopes`) and keeps the last
answers of the rest, so it does not wait at all.

:class:`RateGate` keeps "the forge told us to wait": a ``Retry-After``, a spent primary
limit until its reset, or a guessed wait that doubles while the forge keeps refusing.
Every wait is clamped to ``[min_wait_s, max_wait_s]``.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from enum import IntEnum

from providers.errors import RateLimited, TransientProviderError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Priority(IntEnum):
    """Who gets the forge's request budget first (lower value = first)."""

    JOB_POLL = 0
    WEBHOOK = 1
    REGISTRATION = 2
    ACTIVITY = 3
    SWEEP = 4


#: Share of the burst that must remain before a call of this priority starts.
_HEADROOM = {
    Priority.JOB_POLL: 0.0,
    Priority.WEBHOOK: 0.0,
    Priority.REGISTRATION: 0.1,
    Priority.ACTIVITY: 0.25,
    Priority.SWEEP: 0.5,
}
#: Priorities that wait for budget instead of being skipped, and for how long at most
#: (a reconcile awaits them: a long wait would hold every other forge's work).
_WAITS = {Priority.JOB_POLL: 10.0, Priority.WEBHOOK: 2.0, Priority.REGISTRATION: 5.0}


class BudgetShort(TransientProviderError):
    """The budget is kept for more urgent calls; this one is skipped, try next round."""


def clamp(seconds: float, low: float, high: float) -> float:
    """``seconds`` inside ``[low, high]``; NaN counts as ``high`` (never a free pass)."""
    if math.isnan(seconds):
        return high
    return min(max(seconds, low), high)


class Budget:
    """Token bucket keeping every 60 s window at or under ``per_minute`` requests.

    The burst (``capacity``) is a sixth of the budget and the refill the rest spread over
    a minute, so ``capacity + 60 * rate == per_minute``. Requests are charged when sent
    (the balance may go negative, e.g. pagination, which later calls then pay back).
    Thread-safe: the transport charges from worker threads.
    """

    def __init__(self, per_minute: int, clock: Clock, sleep: Sleep = asyncio.sleep) -> None:
        per_minute = max(1, per_minute)
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute / 6)
        self.rate = max(per_minute - self.capacity, 1.0) / 60.0
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()
        self._waiting = dict.fromkeys(Priority, 0)
        self.sent = dict.fromkeys(Priority, 0)  # requests charged, by priority
        self.skipped = dict.fromkeys(Priority, 0)  # calls refused for budget

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now

    def _floor(self, priority: Priority) -> float:
        return 1.0 + _HEADROOM[priority] * self.capacity

    def available(self, priority: Priority = Priority.JOB_POLL) -> int:
        """Whole requests a call of ``priority`` may spend now without waiting."""
        with self._lock:
            self._refill()
            return max(0, math.floor(self._tokens - self._floor(priority) + 1))

    def charge(self, priority: Priority, n: float = 1.0) -> None:
        """Account for a request that was sent (called by the transport)."""
        with self._lock:
            self._refill()
            self._tokens -= n
            self.sent[priority] += int(n)

    def _try(self, priority: Priority) -> float:
        """0 if a call may start now, else the seconds until it might."""
        with self._lock:
            self._refill()
            ahead = any(self._waiting[p] for p in Priority if p < priority)
            missing = self._floor(priority) - self._tokens
            if missing <= 0 and not ahead:
                return 0.0
            return max(missing / self.rate, 0.05)

    async def admit(self, priority: Priority, max_wait_s: float) -> None:
        """Return when a call of ``priority`` may start; :class:`BudgetShort` if it may not.

        Waiting priorities sleep in small steps (so a more urgent caller can overtake)
        until the bucket allows them, for at most ``max_wait_s`` in total (counted by the
        sleeps themselves, so an injected clock that does not move cannot hang a call).
        """
        waited = 0.0
        while True:
            delay = self._try(priority)
            if delay == 0.0:
                return
            limit = min(max_wait_s, _WAITS.get(priority, 0.0))
            if waited + delay > limit:
                with self._lock:
                    self.skipped[priority] += 1
                raise BudgetShort(
                    f"request budget kept for more urgent calls ({priority.name.lower()} "
                    f"skipped, {self.per_minute}/min)",
                    retry_after=delay,
                )
            step = min(delay, 1.0)
            with self._lock:
                self._waiting[priority] += 1
            try:
                await self._sleep(step)
            finally:
                with self._lock:
                    self._waiting[priority] -= 1
            waited += step


class RateGate:
    """The forge's own "wait" orders, clamped, with a growing guess when it gave none.

    ``default_wait_s`` is the first guess (GitHub: 60 s for a secondary limit without
    ``Retry-After``; GitLab: 30 s for a bare 429); every further refusal in a row doubles
    it, an accepted request resets it.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        min_wait_s: float,
        max_wait_s: float,
        default_wait_s: float,
    ) -> None:
        self._clock = clock
        self.min_wait_s = min_wait_s
        self.max_wait_s = max(max_wait_s, min_wait_s)
        self.default_wait_s = default_wait_s
        self._until = 0.0
        self._strikes = 0
        self._lock = threading.Lock()

    def clamp(self, seconds: float) -> float:
        """Any wait the forge asks for, inside the configured bounds."""
        return clamp(seconds, self.min_wait_s, self.max_wait_s)

    def refused(self, asked_s: float | None) -> float:
        """The forge refused a request for rate; block and return the (clamped) wait."""
        with self._lock:
            self._strikes += 1
            if asked_s is None:
                asked_s = self.default_wait_s * 2 ** min(self._strikes - 1, 16)
            wait = self.clamp(asked_s)
            self._until = max(self._until, self._clock() + wait)
            return wait

    def spent_until(self, wait_s: float) -> None:
        """The primary budget is spent: no request until ``wait_s`` from now (clamped)."""
        with self._lock:
            self._until = max(self._until, self._clock() + self.clamp(wait_s))

    def accepted(self) -> None:
        """A request went through: the next guess starts small again."""
        with self._lock:
            self._strikes = 0

    def remaining_wait(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())

    def check(self, forge: str) -> None:
        """Raise :class:`RateLimited` without sending anything while a wait runs."""
        wait = self.remaining_wait()
        if wait > 0:
            raise RateLimited(f"{forge}: rate limited for another {wait:.0f}s", retry_after=wait)
