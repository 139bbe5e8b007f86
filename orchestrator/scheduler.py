"""APScheduler (3.x) wiring: the reconcile loop, the orphan sweep, the forge poll tick
and the nudge.

The jobs run with ``max_instances=1`` and ``coalesce=True``: runs never overlap and
missed ticks collapse into one. A *nudge* (webhook, container exit, operator action)
asks for one reconcile now; if one is already running, exactly one more runs right
after it, so no nudge is lost and a burst of nudges costs at most one extra run.
Every job is wrapped in a guard that logs and counts failures and never lets them out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator.reconciler import Reconciler

log = structlog.get_logger("orchestrator.scheduler")

RECONCILE_JOB = "reconcile"
GC_JOB = "gc_orphans"
FORGE_TICK_JOB = "forge_tick"
#: How often due forge polls are started (each forge's interval is its own: forges.py).
FORGE_TICK_S = 1.0


class ReconcileScheduler:
    """Owns the AsyncIOScheduler. Start it inside the running event loop."""

    def __init__(self, reconciler: Reconciler, *, interval_s: float, gc_interval_s: float) -> None:
        self.reconciler = reconciler
        self.interval_s = interval_s
        self.gc_interval_s = gc_interval_s
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._again = False
        self._running = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_tick: float = time.monotonic()

    def start(self) -> None:
        now = datetime.now(UTC)
        self._every(RECONCILE_JOB, self._reconcile, self.interval_s, first_run=now)
        self._every(GC_JOB, self.reconciler.gc_forges, self.gc_interval_s, first_run=now)
        self._every(FORGE_TICK_JOB, self._forge_tick, FORGE_TICK_S)
        self._scheduler.start()

    def _every(
        self,
        name: str,
        func: Callable[[], Awaitable[object]],
        seconds: float,
        *,
        first_run: datetime | None = None,
    ) -> None:
        """One guarded loop: never two runs at once, missed ticks collapse into one; the
        first run at ``first_run``, else one interval from now (APScheduler's default)."""
        timing = {} if first_run is None else {"next_run_time": first_run}
        self._scheduler.add_job(
            self._guard(name, func),
            "interval",
            seconds=seconds,
            id=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **timing,
        )

    async def _forge_tick(self) -> None:
        self.reconciler.forges.tick()

    def nudge(self) -> None:
        """Run one reconcile as soon as possible (coalesced with any in flight)."""
        if self._running:
            self._again = True
            return
        if not self._scheduler.running:
            return
        job = self._scheduler.get_job(RECONCILE_JOB)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))
            self._scheduler.wakeup()

    async def _reconcile(self) -> None:
        self._running = True
        self._idle.clear()
        try:
            while True:
                self._again = False
                self.last_tick = time.monotonic()
                await self.reconciler.run_once()
                self.last_tick = time.monotonic()
                if not self._again:
                    break
        finally:
            self._running = False
            self._idle.set()

    @staticmethod
    def _guard(name: str, func: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def guarded() -> None:
            with structlog.contextvars.bound_contextvars(loop=name):
                try:
                    await func()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("loop.failed", loop=name)

        guarded.__name__ = name
        return guarded

    async def stop(self, timeout_s: float) -> bool:
        """Stop scheduling, let an in-flight reconcile finish (up to ``timeout_s``).

        Returns False when the reconcile did not finish in time (it is then cancelled).
        """
        if self._scheduler.running:
            self._scheduler.pause()
        self._again = False
        finished = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            finished = False
            log.warning("shutdown.reconcile_timeout", timeout_s=timeout_s)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
        return finished
