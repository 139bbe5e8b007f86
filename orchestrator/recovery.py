"""Recovery and sweeps: what a crash, a manual ``docker rm`` or a lost forge call leaves.

* :func:`recover` (at start): rows stuck before their container started are failed
  (the normal retire path cleans them up); rows whose container runs are adopted.
* :func:`remove_orphan_container` (every settle): a labelled container with no runner
  row is removed, and its forge registration (from its label) deleted.
* :func:`sweep_forges` (every ``GC_INTERVAL``, after the lifecycle retried its pending
  unregistrations): registrations with this instance's name prefix that no row accounts
  for are deleted (never a busy one, never one of another instance).
* :func:`orphaned_registrations`: the pending unregistrations, for ``/status``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from orchestrator.backoff import RetryBook
from orchestrator.forges import ForgeTracker
from orchestrator.metrics import Metrics
from orchestrator.models import STARTING_STATES, Runner, RunnerState
from orchestrator.runtime import ContainerInfo, ContainerRuntime, Listing, RuntimeFailure
from orchestrator.snapshot import OrphanedRegistration
from orchestrator.state import Journal
from providers.base import RunnerRef, runner_name_prefix
from providers.errors import ProviderAuthError, ProviderError, RunnerBusy, RunnerNotFound

log = structlog.get_logger("orchestrator.recovery")


def recover(journal: Journal, listing: Listing | None, now: datetime) -> None:
    """Finish or roll back what a previous run left half done (see the module doc).
    ``listing`` None: the runtime did not answer, so no starting runner can be adopted."""
    by_id = {c.runner_id: c for c in listing.containers} if listing else {}
    adopted = failed = 0
    for runner in journal.active():
        if runner.state not in STARTING_STATES:
            continue
        container = by_id.get(runner.id)
        if container is not None and container.running:
            journal.transition(
                runner.id,
                RunnerState.IDLE,
                now=now,
                reason="adopted",
                container_id=container.id,
                host=container.host,
            )
            adopted += 1
        else:
            journal.transition(
                runner.id,
                RunnerState.FAILED,
                now=now,
                reason="interrupted",
                error="daemon stopped while this runner was starting",
            )
            failed += 1
    running = sum(1 for r in journal.active() if r.state in {RunnerState.IDLE, RunnerState.BUSY})
    log.info("recover.done", adopted_starting=adopted, failed_starting=failed, running=running)


async def remove_orphan_container(
    container: ContainerInfo, forges: ForgeTracker, runtime: ContainerRuntime, metrics: Metrics
) -> None:
    """Remove a labelled container no runner row accounts for (and its registration)."""
    log.warning(
        "orphan.container",
        container=container.id[:12],
        host=container.host,
        runner=container.runner_id,
    )
    provider = forges.provider(container.forge)
    if container.forge_runner_id and provider is not None and not forges.is_paused(container.forge):
        try:
            ref = RunnerRef(forge_id=container.forge_runner_id, name=container.name)
            await forges.call(provider.unregister_runner(ref))
        except (RunnerNotFound, RunnerBusy):
            pass
        except ProviderError as exc:
            log.warning("orphan.unregister_failed", error=str(exc))
            return
    try:
        await runtime.remove(container.host, container.id)
    except RuntimeFailure as exc:
        log.warning("orphan.remove_failed", error=str(exc))
        return
    metrics.orphans.labels("container").inc()


async def sweep_forges(
    forges: ForgeTracker, journal: Journal, metrics: Metrics, instance_id: str
) -> int:
    """Delete leaked registrations of this instance. Returns how many went."""
    removed = 0
    names = {r.name for r in journal.active()}
    prefix = runner_name_prefix(instance_id)
    for forge in forges.forges.values():
        if forge.paused:
            continue
        try:
            own = await forges.call(forge.provider.list_own_runners())
        except ProviderAuthError as exc:
            forges.auth_failed(forge.name, exc)
            continue
        except ProviderError as exc:
            log.warning("gc.list_failed", forge=forge.name, error=str(exc))
            continue
        for fr in own:
            if fr.name in names or not fr.name.startswith(prefix) or fr.busy:
                continue
            try:
                await forges.call(
                    forge.provider.unregister_runner(RunnerRef(forge_id=fr.id, name=fr.name))
                )
            except (RunnerNotFound, RunnerBusy):
                continue
            except ProviderAuthError as exc:
                forges.auth_failed(forge.name, exc)
                break
            except ProviderError as exc:
                log.warning(
                    "gc.unregister_failed", forge=forge.name, runner=fr.name, error=str(exc)
                )
                continue
            removed += 1
            metrics.orphans.labels("forge_runner").inc()
            log.info("gc.forge_runner_removed", forge=forge.name, runner=fr.name)
    return removed


def orphaned_registrations(
    active: Sequence[Runner], retries: RetryBook, forge_ref: Callable[[Runner], RunnerRef]
) -> list[OrphanedRegistration]:
    """Runners whose forge registration is still to be deleted, with why and when next."""
    rows = {r.id: r for r in active}
    return [
        OrphanedRegistration(
            runner=runner_id,
            name=r.name,
            pool=r.pool,
            forge=r.forge,
            forge_runner_id=str(forge_ref(r)),
            reason=retry.reason,
            attempts=retry.attempts,
            retry_at=retry.next_at,
        )
        for runner_id, retry in retries
        if (r := rows.get(runner_id)) is not None
    ]
