"""``runner-orchestrator plan``: one dry-run reconcile that changes nothing.

It asks the forges for their pending jobs (read-only calls), reads the journal without
writing, and runs the planner. Docker is not contacted: host capacity is assumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from orchestrator.config import Settings
from orchestrator.metrics import Metrics
from orchestrator.reconciler import Reconciler
from orchestrator.runtime import (
    ContainerInfo,
    ContainerSpec,
    EventCallback,
    GpuRequest,
    HostStatus,
    Listing,
)
from orchestrator.state import Journal


class _NoRuntime:
    """A runtime that is never asked to act: the plan command must change nothing."""

    instance_id = ""

    async def start(self, on_event: EventCallback) -> None:
        return None

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        raise AssertionError("plan must not create containers")

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        raise AssertionError("plan must not start containers")

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        raise AssertionError("plan must not stop containers")

    async def remove(self, host: str, container_id: str) -> None:
        raise AssertionError("plan must not remove containers")

    async def list(self) -> Listing:
        return Listing(())

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        return ""

    def hosts(self) -> Sequence[HostStatus]:
        return ()

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        return ""

    async def release_unused(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def dry_run(settings: Settings) -> dict[str, Any]:
    """Plan once and describe it as plain data."""
    from orchestrator.app import build_providers

    journal = Journal.open_read_only(settings.journal_path)
    instance_id = settings.instance_id or journal.stored_instance_id() or "plan"
    metrics = Metrics()
    providers = build_providers(settings, instance_id, metrics.observe_request)
    reconciler = Reconciler(
        settings=settings,
        journal=journal,
        providers=providers,
        runtime=_NoRuntime(),
        metrics=metrics,
        instance_id=instance_id,
    )
    try:
        jobs, plan = await reconciler.plan_only()
        forges = reconciler.forge_report()
    finally:
        for provider in providers.values():
            await provider.aclose()
        journal.close()
    return {
        "forges": forges,
        "jobs": [
            {
                "job": w.job.key,
                "scope": w.job.scope,
                "tags": sorted(w.job.tags),
                "pool": w.pool,
                "reason": w.reason.value,
                "detail": w.detail,
            }
            for w in plan.waiting
        ],
        "create": [dataclasses.asdict(c) for c in plan.create],
        "retire": [dataclasses.asdict(r) for r in plan.retire],
        "pending": len(jobs),
    }
