"""The runner lifecycle: create, retire and settle runners, journalled before each act.

* **create**: journal ``requested`` -> ``registering`` -> forge registration ->
  ``starting`` with the forge id -> container created (id journalled) -> started ->
  ``idle``. A failure marks the runner ``failed`` and counts against its pool's
  spawn backoff (:class:`orchestrator.backoff.SpawnBackoff`).
* **retire**: :class:`orchestrator.retire.RunnerRetirer` (unregister, then stop and
  remove; its retry book for failed unregistrations).
* **settle**: what the runtime's listing says: a container that exited or vanished
  retires its runner; one that exited non-zero before its runner proved itself (took a
  job, or lived past ``early_exit_window_s``) is a spawn failure of its pool; a labelled
  container with no runner row is an orphan and is removed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from orchestrator.activity import ActivitySync
from orchestrator.backoff import SpawnBackoff
from orchestrator.config import PoolConfig, Settings
from orchestrator.forges import ForgeTracker
from orchestrator.labels import pool_labels
from orchestrator.logging import forget_secret, register_secret
from orchestrator.metrics import Metrics
from orchestrator.models import CreateRequest, PoolSpec, Runner, RunnerState
from orchestrator.recovery import remove_orphan_container
from orchestrator.retire import RunnerRetirer
from orchestrator.runtime import ContainerInfo, ContainerRuntime, Listing, RuntimeFailure
from orchestrator.runtime.spec import container_spec, gpu_request, pool_platform
from orchestrator.state import Journal
from providers.base import RunnerRequest, runner_name_prefix
from providers.errors import ProviderAuthError, ProviderError

log = structlog.get_logger("orchestrator.lifecycle")

#: A runner whose container exits non-zero within this many seconds of its start (or
#: before it took any job) is a spawn failure of its pool.
EARLY_EXIT_WINDOW_S = 120.0
#: How much of the log tail goes into a pool's "unavailable" reason.
_REASON_TAIL_LINES = 3


class RunnerLifecycle:
    """Creates and settles runners, and retires them through its
    :class:`~orchestrator.retire.RunnerRetirer`. Owns the spawn backoff, the minted
    credentials (only to forget them in the redactor) and the runners' start times."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        runtime: ContainerRuntime,
        forges: ForgeTracker,
        metrics: Metrics,
        instance_id: str,
        clock: Callable[[], datetime],
        spawn_concurrency: int = 8,
        early_exit_window_s: float = EARLY_EXIT_WINDOW_S,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.runtime = runtime
        self.forges = forges
        self.metrics = metrics
        self.instance_id = instance_id
        self.clock = clock
        self.early_exit_window_s = early_exit_window_s
        self.pool_specs: dict[str, PoolSpec] = {p.name: p for p in settings.pool_specs()}
        self.pools: dict[str, PoolConfig] = {p.name: p for p in settings.pools}
        self.spawn = SpawnBackoff(clock)
        self.activity = ActivitySync(
            journal=journal, forges=forges, clock=clock, on_job_taken=self._proven
        )
        self.retirer = RunnerRetirer(
            journal=journal,
            runtime=runtime,
            forges=forges,
            activity=self.activity,
            metrics=metrics,
            clock=clock,
            on_removed=self.forget,
        )
        self._spawn_sem = asyncio.Semaphore(spawn_concurrency)
        self._started: dict[str, datetime] = {}
        # Minted credentials, only so the log redactor can forget them once the runner is
        # gone; never persisted, never shown.
        self._credentials: dict[str, str] = {}

    # --- pools -------------------------------------------------------------------------------

    def unavailable_pools(self) -> dict[str, str]:
        """Pools that cannot take a runner now, and why (spawn backoff, no host fits)."""
        out: dict[str, str] = {}
        for name, cfg in self.pools.items():
            reason = self.spawn.unavailable(name) or self.runtime.placeable(
                pool_platform(cfg), gpu_request(cfg), tuple(cfg.hosts)
            )
            if reason:
                out[name] = reason
        return out

    def limit_probes(self, creates: Sequence[CreateRequest]) -> list[CreateRequest]:
        """Pools on spawn probation start one probe runner at a time (see backoff)."""
        return self.spawn.limit_probes(creates, self.journal.active())

    def prove_long_lived(self) -> None:
        """Runners that outlived the early-exit window prove their pool healthy."""
        now = self.clock()
        active = {r.id: r for r in self.journal.active()}
        for runner_id, started in list(self._started.items()):
            runner = active.get(runner_id)
            if runner is None:  # removed behind our back (or pruned): forget it
                del self._started[runner_id]
            elif (now - started).total_seconds() >= self.early_exit_window_s:
                self.spawn.proven(runner.pool, started)

    def _proven(self, runner: Runner) -> None:
        self.spawn.proven(runner.pool, self._started.get(runner.id))

    # --- create -------------------------------------------------------------------------------

    async def create(
        self, request: CreateRequest, index: int, queued_at: Mapping[str, datetime]
    ) -> bool:
        """Journal, register, create, start one runner. True when its container runs."""
        spec = self.pool_specs[request.pool]
        cfg = self.pools[request.pool]
        forge = self.forges.forges[spec.forge]
        job_key = request.jobs[index] if index < len(request.jobs) else ""
        scope = request.scopes[index] if index < len(request.scopes) else ""
        async with self._spawn_sem:
            runner_id = secrets.token_hex(6)
            name = f"{runner_name_prefix(self.instance_id)}{spec.name}-{runner_id[:8]}"
            now = self.clock()
            self.journal.create(
                runner_id=runner_id,
                name=name,
                pool=spec.name,
                forge=spec.forge,
                platform=request.platform,
                now=now,
                scope=scope,
            )
            self.journal.transition(
                runner_id, RunnerState.REGISTERING, now=now, reason=request.reason
            )
            try:
                registration = await self.forges.call(
                    forge.provider.register_runner(
                        RunnerRequest(
                            name=name,
                            pool=spec.name,
                            labels=pool_labels(spec, request.platform),
                            run_untagged=spec.run_untagged,
                            ephemeral=spec.ephemeral,
                            executor=cfg.executor,
                            executor_args=tuple(cfg.executor_args),
                            idle_timeout_s=int(spec.cooldown_s),
                            scope=scope,
                        )
                    )
                )
            except ProviderError as exc:
                if isinstance(exc, ProviderAuthError):
                    self.forges.auth_failed(forge.name, exc)
                return self._spawn_failed(runner_id, spec.name, "register", str(exc))
            register_secret(registration.credential)
            self._credentials[runner_id] = registration.credential
            self.journal.transition(
                runner_id,
                RunnerState.STARTING,
                now=self.clock(),
                reason="registered",
                forge_runner_id=registration.forge_runner_id,
            )
            try:
                info = await self.runtime.create(
                    container_spec(
                        cfg,
                        registration,
                        runner_id=runner_id,
                        name=name,
                        instance_id=self.instance_id,
                        forge=spec.forge,
                        forge_kind=spec.forge_kind,
                        platform=request.platform,
                        default_image=self.settings.runner_image,
                        credential_delivery=self.settings.credential_delivery,
                    )
                )
                self.journal.update(runner_id, container_id=info.id, host=info.host)
                await self.runtime.start_container(info)
            except RuntimeFailure as exc:
                return self._spawn_failed(runner_id, spec.name, "start", str(exc))
            started = self.clock()
            self.journal.transition(runner_id, RunnerState.IDLE, now=started, reason="started")
            self._started[runner_id] = started
            self.metrics.spawned.labels(spec.name).inc()
            queued = queued_at.get(job_key)
            if queued is not None:
                self.metrics.pickup_latency.labels(spec.name).observe(
                    max(0.0, (started - queued).total_seconds())
                )
            log.info(
                "runner.started",
                runner=runner_id,
                pool=spec.name,
                job=job_key or None,
                platform=request.platform,
                host=info.host,
            )
            return True

    def _spawn_failed(self, runner_id: str, pool: str, stage: str, error: str) -> bool:
        message = f"{stage} failed: {error}"
        self.journal.transition(
            runner_id, RunnerState.FAILED, now=self.clock(), reason=stage, error=message
        )
        self._pool_failed(runner_id, pool, stage, message)
        return False

    def _pool_failed(self, runner_id: str, pool: str, stage: str, message: str) -> None:
        self.metrics.failures.labels(pool, stage).inc()
        wait = self.spawn.failed(pool, message)
        log.warning(
            "runner.spawn_failed",
            runner=runner_id,
            pool=pool,
            stage=stage,
            error=message,
            backoff_s=wait,
        )

    # --- settle: what the runtime says ---------------------------------------------------------

    async def list_containers(self) -> Listing | None:
        try:
            return await self.runtime.list()
        except RuntimeFailure as exc:
            log.warning("runtime.list_failed", error=str(exc))
            return None

    async def settle(self, listing: Listing | None) -> None:
        if listing is None:
            return
        by_runner = {c.runner_id: c for c in listing.containers if c.runner_id}
        active = self.journal.active()
        active_ids = {r.id for r in active}
        for runner in active:
            container = by_runner.get(runner.id)
            if runner.state in {RunnerState.IDLE, RunnerState.BUSY}:
                if container is None:
                    if runner.host in listing.unreachable:
                        continue  # unknown, not gone: wait for the host to answer
                    await self.retirer.retire(runner, "container_gone", force=True)
                elif not container.running:
                    await self._container_ended(runner, container)
            elif runner.state in {RunnerState.DRAINING, RunnerState.FAILED}:
                await self.retirer.retire(runner, "cleanup", force=True)
        for container in listing.containers:
            if container.runner_id not in active_ids:
                await remove_orphan_container(container, self.forges, self.runtime, self.metrics)
        self.prove_long_lived()

    async def _container_ended(self, runner: Runner, container: ContainerInfo) -> None:
        tail = await self.retirer.tail(runner.host, container.id)
        code = container.exit_code
        if code != 0:
            self.metrics.failures.labels(runner.pool, "exited").inc()
        self.journal.update(runner.id, exit_code=code, logs_tail=tail)
        log.info("runner.container_ended", runner=runner.id, pool=runner.pool, exit_code=code)
        started = self._started.get(runner.id)
        took_job = runner.state is RunnerState.BUSY or runner.last_job_ended_at is not None
        young = (
            started is not None
            and (self.clock() - started).total_seconds() < self.early_exit_window_s
        )
        if code != 0 and (young or (started is not None and not took_job)):
            last = " | ".join(tail.strip().splitlines()[-_REASON_TAIL_LINES:])
            when = "before taking a job" if not took_job else "right after its start"
            self._pool_failed(
                runner.id, runner.pool, "early_exit", f"exited {code} {when}: {last}".strip()
            )
        await self.retirer.retire(self.journal.get(runner.id), "exited", force=True)

    # --- retire (the retirer's) -----------------------------------------------------------------

    async def retire(
        self, runner: Runner, reason: str, *, force: bool = False, sweep: bool = False
    ) -> bool:
        """Unregister, then stop and remove (see :meth:`RunnerRetirer.retire`)."""
        return await self.retirer.retire(runner, reason, force=force, sweep=sweep)

    async def sweep_orphaned(self) -> int:
        """Retry every pending unregistration now (the forge sweep)."""
        return await self.retirer.sweep_orphaned()

    def forget(self, runner: Runner) -> None:
        """Drop what the lifecycle and its activity sync hold about a removed runner (the
        retirer has dropped its retry entry)."""
        self.activity.forget(runner)
        self._started.pop(runner.id, None)
        forget_secret(self._credentials.pop(runner.id, None))
