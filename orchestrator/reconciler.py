"""The coordinator: observe -> settle -> plan -> apply, one at a time, level-triggered.

The parts it drives, each owning (and pruning) its own state:

* :class:`orchestrator.forges.ForgeTracker`: polls each forge independently, pauses and
  resumes them, keeps webhook hints (each forge's state and hint book), answers
  ``demand()``;
* :class:`orchestrator.lifecycle.RunnerLifecycle`: create, settle, spawn backoff; its
  :class:`~orchestrator.retire.RunnerRetirer` retires runners and keeps unregistration
  retries, its :class:`~orchestrator.activity.ActivitySync` keeps the busy/idle view;
* :func:`orchestrator.planner.compute_plan` (pure) and
  :func:`orchestrator.snapshot.build_snapshot` (pure).

One :meth:`Reconciler.run_once`, in this order:

1. **supply**: the runtime's containers, settled (exited/vanished containers retire
   their runner; orphans are removed); then busy/idle of runners whose view is stale
   (each forge's check its own task, waited for a short grace like the polls; a slower
   forge's runners keep their last view and are not retired this round).
2. **demand**: every forge's pending jobs (each forge's poll its own task; the reconcile
   waits a short grace, a slower forge keeps its last view). Supply first, so a job a
   runner takes after we looked at the runner is never counted twice; jobs a runner is
   known to run are dropped from demand in any case.
3. **plan** (pure), then **apply**: retire first (freeing capacity), then create
   concurrently (bounded; a pool on spawn probation gets one runner at a time).

Webhooks and container events only *nudge* an earlier run; polling alone is correct.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.config import Settings
from orchestrator.forges import ForgeLimits, ForgeTracker
from orchestrator.lifecycle import RunnerLifecycle
from orchestrator.metrics import Metrics
from orchestrator.models import (
    Job,
    Plan,
    PoolSpec,
    Runner,
    RunnerState,
)
from orchestrator.planner import compute_plan
from orchestrator.recovery import orphaned_registrations, recover, sweep_forges
from orchestrator.runtime import ContainerEvent, ContainerRuntime, RuntimeFailure
from orchestrator.snapshot import RunResult, Snapshot, build_snapshot
from orchestrator.state import Journal, UnknownRunner
from providers.base import Provider, WebhookResult

log = structlog.get_logger("orchestrator.reconciler")

#: Removed runners stay in the journal (for /runners and their logs) this long.
_KEEP_REMOVED = timedelta(days=7)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class Summary:
    """The outcome of one reconcile (also the canonical log line)."""

    pending: int
    created: int
    retired: int
    failed: int
    waiting: int
    duration_s: float
    result: str
    error: str = ""


class Reconciler:
    """Drives the journal's runners towards the plan. See the module doc."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        providers: Mapping[str, Provider],
        runtime: ContainerRuntime,
        metrics: Metrics,
        instance_id: str,
        clock: Callable[[], datetime] = utcnow,
        spawn_concurrency: int = 8,
        nudge: Callable[[], None] | None = None,
        limits: ForgeLimits | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.runtime = runtime
        self.metrics = metrics
        self.instance_id = instance_id
        self.clock = clock
        self._nudge: Callable[[], None] = nudge or (lambda: None)
        self.pool_specs: list[PoolSpec] = settings.pool_specs()
        self.forges = ForgeTracker(
            providers,
            limits=limits or ForgeLimits.from_settings(settings),
            metrics=metrics,
            clock=clock,
            nudge=self._nudge_now,
        )
        self.lifecycle = RunnerLifecycle(
            settings=settings,
            journal=journal,
            runtime=runtime,
            forges=self.forges,
            metrics=metrics,
            instance_id=instance_id,
            clock=clock,
            spawn_concurrency=spawn_concurrency,
        )
        self._lock = asyncio.Lock()
        self._scale_up: dict[str, int] = {}
        self._scale_down: dict[str, int] = {}
        self.snapshot = Snapshot(instance_id=instance_id)
        self._last_plan = Plan()

    # --- public API -------------------------------------------------------------------------

    @property
    def nudge(self) -> Callable[[], None]:
        """Ask for a reconcile soon (the scheduler sets this)."""
        return self._nudge

    @nudge.setter
    def nudge(self, value: Callable[[], None]) -> None:
        self._nudge = value

    def _nudge_now(self) -> None:
        self._nudge()

    @property
    def busy(self) -> bool:
        """True while a reconcile (or another mutating operation) is running."""
        return self._lock.locked()

    def request_scale(self, pool: str, delta: int) -> None:
        """Operator scale-up (delta > 0) or scale-down (delta < 0), applied next run."""
        if pool not in self.lifecycle.pools:
            raise KeyError(pool)
        if delta > 0:
            self._scale_up[pool] = self._scale_up.get(pool, 0) + delta
        elif delta < 0:
            self._scale_down[pool] = self._scale_down.get(pool, 0) - delta

    def on_container_event(self, event: ContainerEvent) -> None:
        """Runtime callback: a container of ours started/died; react at once."""
        if event.action in {"die", "oom", "destroy"}:
            log.info(
                "container.exited",
                runner=event.runner_id,
                exit_code=event.exit_code,
                host=event.host,
            )
            self.nudge()

    def on_webhook(self, forge: str, result: WebhookResult) -> None:
        """Hand a delivery's jobs to the tracker (a hint until a later poll) and nudge."""
        self.forges.on_webhook(forge, result)
        if result.nudge:
            self.nudge()

    async def run_once(self) -> Summary:
        """One full reconcile. Never raises for forge or runtime trouble."""
        async with self._lock:
            return await self._run_once()

    async def plan_only(self) -> tuple[list[Job], Plan]:
        """Observe the forges and plan, changing nothing (``runner-orchestrator plan``)."""
        await self.forges.poll(force=True)
        jobs = self.forges.demand()
        return jobs, self._plan(jobs, self.journal.active(), consume_manual=False)

    def forge_report(self) -> list[dict[str, object]]:
        """Each forge's last poll: name, kind, pending job count and pause reason."""
        return self.forges.report()

    async def retire_now(self, runner_id: str) -> Runner:
        """Operator DELETE: retire one runner now, unless it is busy (then keep it)."""
        async with self._lock:
            runner = self.journal.get(runner_id)
            if runner.state is RunnerState.REMOVED:
                return runner
            await self.lifecycle.retire(runner, "manual", sweep=True)
            self._refresh_snapshot()
            return self.journal.get(runner_id)

    async def logs(self, runner_id: str, tail: int = 200) -> str:
        """Container output of a runner: live while it exists, else the journalled tail."""
        runner = self.journal.get(runner_id)
        if runner.container_id and runner.state is not RunnerState.REMOVED:
            try:
                return await self.runtime.logs(runner.host, runner.container_id, tail)
            except RuntimeFailure:
                pass
        return runner.logs_tail

    async def aclose(self) -> None:
        """Stop polls and activity checks still in flight (shutdown)."""
        await self.lifecycle.activity.aclose()
        await self.forges.aclose()

    # --- recovery, garbage collection and drain ------------------------------------------------

    async def recover(self) -> None:
        """On start: finish or roll back what a previous run left half done.

        Rows stuck before their container started are failed (and then cleaned up by the
        normal retire path); rows whose container runs are adopted; labelled containers
        with no row are removed by the next reconcile's settle step.
        """
        async with self._lock:
            recover(self.journal, await self.lifecycle.list_containers(), self.clock())

    async def gc_forges(self) -> int:
        """The forge sweep: finish pending unregistrations, then delete registrations this
        instance created that no runner row accounts for (never a busy one, never one
        without this instance's name prefix). Also prunes old removed journal rows."""
        async with self._lock:
            removed = await self.lifecycle.sweep_orphaned()
            removed += await sweep_forges(self.forges, self.journal, self.metrics, self.instance_id)
            pruned = self.journal.prune(self.clock() - _KEEP_REMOVED)
            if pruned:
                log.info("gc.journal_pruned", rows=pruned)
            self._refresh_snapshot()
            return removed

    async def drain(self, timeout_s: float) -> None:
        """Shutdown in drain mode: retire every runner; busy ones get until the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self._lock:
                active = self.journal.active()
                if not active:
                    break
                force = time.monotonic() >= deadline
                for runner in active:
                    await self.lifecycle.retire(runner, "drain", force=force, sweep=force)
            if force or not self.journal.active():
                break
            await asyncio.sleep(1.0)
        self._refresh_snapshot()

    # --- the reconcile -------------------------------------------------------------------------

    async def _run_once(self) -> Summary:
        started = time.monotonic()
        now = self.clock()
        error = ""
        created = retired = failed = 0
        with structlog.contextvars.bound_contextvars(reconcile=secrets.token_hex(3)):
            try:
                # Supply before demand (see the module doc).
                await self.lifecycle.settle(await self.lifecycle.list_containers())
                await self.lifecycle.activity.refresh()
                self._refresh_snapshot()  # runners as they are now, before any forge wait
                await self.forges.poll()
                jobs = self._demand()
                plan = self._plan(jobs, self.journal.active(), consume_manual=True)
                self._last_plan = plan
                for request in plan.retire:
                    if await self._retire_request(request.runner_id, request.reason):
                        retired += 1
                queued_at = {j.key: j.created_at for j in jobs}
                results = await asyncio.gather(
                    *(
                        self.lifecycle.create(req, n, queued_at)
                        for req in self.lifecycle.limit_probes(plan.create)
                        for n in range(req.count)
                    )
                )
                created = sum(1 for ok in results if ok)
                failed = sum(1 for ok in results if not ok)
            except Exception as exc:  # the loop's last guard: a bug, logged as one
                error = f"{type(exc).__name__}: {exc}"
                log.exception("reconcile.crashed")
            duration = time.monotonic() - started
            degraded = self.forges.degraded()
            result = "error" if error else ("degraded" if degraded else "ok")
            self.metrics.reconciles.labels("ok" if not error else "error").inc()
            self.metrics.reconcile_duration.observe(duration)
            self._refresh_snapshot(RunResult(now, duration, result, error))
            snap = self.snapshot
            summary = Summary(
                pending=sum(p.pending_jobs for p in snap.pools) + snap.unmatched_jobs,
                created=created,
                retired=retired,
                failed=failed,
                waiting=len(snap.waiting),
                duration_s=duration,
                result=result,
                error=error,
            )
            log.info(
                "reconcile.done",
                result=result,
                pending=summary.pending,
                runners=sum(p.active for p in snap.pools),
                created=created,
                retired=retired,
                failed=failed,
                blocked=sum(
                    v for k, v in snap.waiting_by_reason().items() if k != "runner_starting"
                ),
                paused_forges=degraded,
                duration_ms=round(duration * 1000, 1),
                error=error or None,
            )
            return summary

    def _demand(self) -> list[Job]:
        """The tracker's demand minus jobs a runner is known to be running already."""
        running = {f"{r.forge}:{r.current_job}" for r in self.journal.active() if r.current_job}
        return [j for j in self.forges.demand() if j.key not in running]

    def _plan(
        self, jobs: Sequence[Job], runners: Sequence[Runner], *, consume_manual: bool
    ) -> Plan:
        plan = compute_plan(
            jobs=jobs,
            runners=runners,
            pools=self.pool_specs,
            now=self.clock(),
            global_max=self.settings.max_runners,
            paused_forges=self.forges.unusable(),
            unavailable_pools=self.lifecycle.unavailable_pools(),
            scale_up=dict(self._scale_up),
            scale_down=dict(self._scale_down),
        )
        if consume_manual:
            self._scale_up.clear()
            self._scale_down.clear()
        return plan

    async def _retire_request(self, runner_id: str, reason: str) -> bool:
        try:
            runner = self.journal.get(runner_id)
        except UnknownRunner:
            return False
        return await self.lifecycle.retire(runner, reason)

    # --- snapshot --------------------------------------------------------------------------------

    def _refresh_snapshot(self, run: RunResult | None = None) -> None:
        active = self.journal.active()
        self.snapshot = build_snapshot(
            self.snapshot,
            now=self.clock(),
            pools=self.pool_specs,
            active=active,
            recent=self.journal.recent(200),
            plan=self._last_plan,
            unavailable=self.lifecycle.unavailable_pools(),
            forges=self.forges.statuses(),
            hosts=self.runtime.hosts(),
            orphaned=orphaned_registrations(
                active, self.lifecycle.retirer.unregister, self.lifecycle.activity.forge_ref
            ),
            run=run,
        )
