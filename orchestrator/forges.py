"""The forge tracker: what each forge wants (its pending jobs), polled independently.

One :class:`~orchestrator.forge_state.ForgeState` per configured forge holds everything
the daemon remembers about that forge between reconciles: its last job list, whether it
is paused and until when, its webhook hints (a
:class:`~orchestrator.forge_hints.HintBook`), and the poll in flight. The tracker owns
them: it starts and reaps their poll tasks, maps a poll's errors to pauses, and answers
for all forges. Nothing else in the daemon keeps forge state.

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
  evidently read its scope supersedes it (see
  :meth:`~orchestrator.forge_hints.HintBook.supersede`), and
  never longer than ``hint_ttl_s`` nor more than ``hint_max`` per forge (oldest first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TypeVar

from orchestrator.forge_state import (
    WAIT_MIN_S,
    ForgeLimits,
    ForgeState,
    provider_deadline,
    within,
)
from orchestrator.metrics import Metrics
from orchestrator.models import ForgeKind, Job
from orchestrator.snapshot import ForgeStatus
from providers.base import Provider, WebhookResult
from providers.errors import DeadlineExceeded, ProviderAuthError, ProviderError, RateLimited

# Importers name these as ``orchestrator.forges``'s (app, reconciler, tests).
__all__ = ["WAIT_MIN_S", "ForgeLimits", "ForgeState", "ForgeTracker", "provider_deadline"]

T = TypeVar("T")


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
        started = clock()
        self.forges: dict[str, ForgeState] = {
            name: ForgeState(name=name, kind=ForgeKind(p.kind), provider=p, tracked_since=started)
            for name, p in providers.items()
        }
        self._waiting = False

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

    def _start_due(self, *, force: bool, pending_too: bool = False) -> None:
        """``pending_too`` (a reconcile): also poll a forge whose view or webhook hints list
        waiting jobs, due or not. The reconcile is about to spawn for them, and a nudge (a
        runner's container exited: its job may be done) means the view may be out of date;
        spawning from it made a second runner for a finished job. A hint is superseded
        only by a poll that lists its job while it waits (or others of its scope), so a
        hint must be followed by a poll soon, not at the safety-net interval."""
        now = self.clock()
        for forge in self.forges.values():
            fresh = pending_too and bool(forge.jobs or forge.hints.jobs) and not forge.paused
            if (force or fresh or forge.due(now)) and forge.task is None:
                forge.task = asyncio.create_task(self._poll(forge), name=f"poll-{forge.name}")

    def _reap(self) -> None:
        for forge in self.forges.values():
            task = forge.task
            if task is not None and task.done():
                forge.task = None
                task.result()  # re-raises a bug in the provider or in this module

    async def _poll(self, forge: ForgeState) -> None:
        started = self.clock()
        before = forge.view(self.limits, started)
        try:
            pending = await self.call(forge.provider.pending_jobs())
        except DeadlineExceeded as exc:
            self._failed(forge, exc, "timeout")
        except ProviderAuthError as exc:
            self.auth_failed(forge.name, exc)
        except RateLimited as exc:
            wait = self.limits.clamp_wait(exc.retry_after, self.limits.poll_interval_s)
            forge.pause(f"rate limited; retrying in {wait:.0f}s", wait, self.clock())
            self.metrics.forge_errors.labels(forge.name, "rate_limited").inc()
        except ProviderError as exc:
            self._failed(forge, exc, "error")
        else:
            forge.succeeded(pending, started, self.clock())
        forge.schedule(self.limits, self.clock())
        if not self._waiting and forge.view(self.limits, self.clock()) != before:
            self.nudge()  # a late or scheduled answer that changed the view: use it now

    def _failed(self, forge: ForgeState, exc: ProviderError, kind: str) -> None:
        forge.failed(exc, self.limits, self.clock())
        self.metrics.forge_errors.labels(forge.name, kind).inc()

    def auth_failed(self, name: str, exc: ProviderAuthError) -> None:
        """The forge refused our token (on a poll or a registration): pause it."""
        forge = self.forges[name]
        forge.pause(f"authentication failed: {exc}", self.limits.auth_pause_s, self.clock())
        self.metrics.forge_errors.labels(forge.name, "auth").inc()

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
        forge.hints.add(name, result, now)
        forge.hints.bound(now, self.limits.hint_ttl_s, self.limits.hint_max)

    # --- answers -------------------------------------------------------------------------------

    def demand(self) -> list[Job]:
        """Every pending job: last polls, minus webhook "finished", plus webhook hints."""
        now = self.clock()
        jobs: list[Job] = []
        for forge in self.forges.values():
            forge.hints.bound(now, self.limits.hint_ttl_s, self.limits.hint_max)
            jobs.extend(forge.hints.demand(forge.jobs))
        return jobs

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
            stale = forge.stale(self.limits, self.clock())
            if stale and forge.name not in out:
                out[forge.name] = f"view too old: {stale}"
        return out

    def stale(self, forge: ForgeState) -> str:
        """Why the forge's view is too old to trust, or '' (see :meth:`ForgeState.stale`)."""
        return forge.stale(self.limits, self.clock())

    def degraded(self) -> list[str]:
        """Forges that are paused or stale (a reconcile with any of them is not "ok")."""
        return [f.name for f in self.forges.values() if f.paused or self.stale(f)]

    def statuses(self) -> list[ForgeStatus]:
        """Each forge for the snapshot (``pending_jobs`` is filled in from the plan)."""
        return [f.status(self.limits, self.clock()) for f in self.forges.values()]

    def report(self) -> list[dict[str, object]]:
        """Each forge's last poll for ``runner-orchestrator plan``."""
        return [
            {"name": f.name, "kind": f.kind.value, "pending": len(f.jobs), "error": f.paused}
            for f in self.forges.values()
        ]
