"""Retiring runners: unregister on the forge, keep the log tail, stop and remove.

Split from :mod:`orchestrator.lifecycle` (which creates and settles runners and owns the
spawn books); this module owns the per-runner unregistration retry book. The order, each
step journalled before it acts: re-check an idle runner for a job -> ``draining`` ->
unregister on the forge (so it stops handing out jobs) -> keep the log tail -> stop and
remove the container -> ``removed``. An unregistration that fails is retried with backoff
per runner (:class:`orchestrator.backoff.RetryBook`), never every reconcile; after a few
attempts only the forge sweep retries it, and ``/status`` lists it as an orphaned
registration with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from orchestrator.activity import ActivitySync
from orchestrator.backoff import RetryBook
from orchestrator.forges import ForgeTracker
from orchestrator.metrics import Metrics
from orchestrator.models import Runner, RunnerState
from orchestrator.runtime import ContainerRuntime, RuntimeFailure
from orchestrator.state import Journal
from providers.errors import ProviderAuthError, ProviderError, RunnerBusy, RunnerNotFound

# The lifecycle's logger, as before the split: "retire.*" and "runner.retired" read the same.
log = structlog.get_logger("orchestrator.lifecycle")

LOG_TAIL_LINES = 50


class RunnerRetirer:
    """Retires runners. Owns the unregistration retry book: a runner's entry goes when it
    is removed, and ``on_removed`` lets the other parts drop what they hold about it."""

    def __init__(
        self,
        *,
        journal: Journal,
        runtime: ContainerRuntime,
        forges: ForgeTracker,
        activity: ActivitySync,
        metrics: Metrics,
        clock: Callable[[], datetime],
        on_removed: Callable[[Runner], None] = lambda _r: None,
    ) -> None:
        self.journal = journal
        self.runtime = runtime
        self.forges = forges
        self.activity = activity
        self.metrics = metrics
        self.clock = clock
        self.on_removed = on_removed
        self.unregister = RetryBook(clock)

    async def retire(
        self, runner: Runner, reason: str, *, force: bool = False, sweep: bool = False
    ) -> bool:
        """Unregister, then stop and remove. True when the runner is gone.

        Unless ``force`` (the container already ended, or a drain deadline passed), an idle
        runner is re-checked for a job right before it is unregistered, and kept if busy.
        A failed unregistration waits for its retry time and a paused forge is not asked;
        ``sweep`` (the forge sweep, a drain deadline) asks anyway.
        """
        now = self.clock()
        if runner.state is RunnerState.REMOVED:
            return True
        if runner.state is RunnerState.BUSY and not force:
            return False  # never retire a busy runner
        provider = self.forges.provider(runner.forge)
        if runner.state is RunnerState.IDLE and not force and provider is not None:
            if runner.forge in await self.activity.refresh(only=[runner]):
                # The forge did not answer within the grace: never unregister on an unknown.
                log.info("retire.skipped_unknown", runner=runner.id, pool=runner.pool)
                return False
            runner = self.journal.get(runner.id)
            if runner.state is RunnerState.BUSY:
                log.info("retire.skipped_busy", runner=runner.id, pool=runner.pool)
                return False
        if runner.state is not RunnerState.DRAINING:
            if runner.state is RunnerState.REQUESTED:
                # Nothing exists outside yet.
                self.journal.transition(runner.id, RunnerState.DRAINING, now=now, reason=reason)
                self.journal.transition(runner.id, RunnerState.REMOVED, now=now, reason=reason)
                return True
            runner = self.journal.transition(
                runner.id, RunnerState.DRAINING, now=now, reason=reason
            )
        waiting = self.forges.is_paused(runner.forge) or not self.unregister.due(runner.id)
        if waiting and not sweep and provider is not None:
            return False  # the forge cannot be asked now; a later reconcile or sweep will
        # 1. Unregister first, so the forge stops handing it jobs.
        ref = self.activity.forge_ref(runner)
        if provider is None:
            log.warning("retire.forge_unknown", runner=runner.id, forge=runner.forge)
        unregistered = True
        if provider is not None and ref:
            try:
                await self.forges.call(provider.unregister_runner(ref, force=force))
            except RunnerNotFound:
                pass
            except RunnerBusy:
                if not force:
                    log.info("retire.kept_busy", runner=runner.id, pool=runner.pool)
                    self.journal.transition(
                        runner.id, RunnerState.BUSY, now=now, reason="forge_refused_busy"
                    )
                    return False
                # The forge will not drop a busy runner (GitHub): stop it first, retry below.
                unregistered = False
            except ProviderError as exc:
                self.metrics.failures.labels(runner.pool, "unregister").inc()
                self._unregister_failed(runner, exc, "unregister failed")
                return False
        # 2. Then stop and remove the container, keeping its last words.
        if runner.container_id:
            try:
                if not runner.logs_tail:
                    tail = await self.tail(runner.host, runner.container_id)
                    if tail:
                        self.journal.update(runner.id, logs_tail=tail)
                await self.runtime.stop(runner.host, runner.container_id, timeout_s=10.0)
                await self.runtime.remove(runner.host, runner.container_id)
            except RuntimeFailure as exc:
                self.metrics.failures.labels(runner.pool, "remove").inc()
                self.journal.update(runner.id, error=f"container removal failed: {exc}")
                log.warning("retire.remove_failed", runner=runner.id, error=str(exc))
                return False
        if not unregistered and provider is not None:
            try:
                await self.forges.call(provider.unregister_runner(ref, force=True))
            except RunnerNotFound:
                pass
            except ProviderError as exc:
                # Its container is gone; the registration is an orphan until a retry or
                # the sweep gets it.
                self._unregister_failed(runner, exc, "unregister pending")
                return False
        self.journal.transition(runner.id, RunnerState.REMOVED, now=self.clock(), reason=reason)
        self.unregister.done(runner.id)
        self.on_removed(runner)
        self.metrics.retired.labels(runner.pool, reason).inc()
        log.info("runner.retired", runner=runner.id, pool=runner.pool, reason=reason)
        return True

    def _unregister_failed(self, runner: Runner, exc: ProviderError, what: str) -> None:
        if isinstance(exc, ProviderAuthError):
            self.forges.auth_failed(runner.forge, exc)
        retry = self.unregister.failed(runner.id, f"{what}: {exc}")
        when = f"retry at {retry.next_at:%H:%M:%S}" if retry.next_at else "left to the sweep"
        self.journal.update(runner.id, error=f"{what} ({when}): {exc}")
        log.warning(
            "retire.unregister_failed",
            runner=runner.id,
            error=str(exc),
            attempts=retry.attempts,
            next_at=retry.next_at.isoformat() if retry.next_at else None,
        )

    async def tail(self, host: str, container_id: str) -> str:
        """The container's last log lines, '' when the runtime cannot say."""
        try:
            return await self.runtime.logs(host, container_id, LOG_TAIL_LINES)
        except RuntimeFailure:
            return ""

    async def sweep_orphaned(self) -> int:
        """Retry every pending unregistration now (the forge sweep). Returns how many
        runners it finished."""
        finished = 0
        for runner_id, _retry in self.unregister:
            runner = self.journal.get(runner_id)
            if await self.retire(runner, "cleanup", force=True, sweep=True):
                finished += 1
        return finished
