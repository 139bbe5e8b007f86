"""The runtime the daemon uses: chosen per Docker endpoint by its ``mode``.

``mode: container`` endpoints go to :class:`~orchestrator.runtime.docker_engine.DockerRuntime`
(the daemon places containers), ``mode: swarm`` endpoints to
:class:`~orchestrator.runtime.swarm.SwarmRuntime` (the engine places services). With only
one kind configured, :func:`build_runtime` returns that runtime itself; with both, a
:class:`CompositeRuntime` routes every call by host name, so the reconciler still sees
one :class:`~orchestrator.runtime.ContainerRuntime`.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    CredentialDelivery,
    EventCallback,
    GpuRequest,
    HostStatus,
    HostUnavailable,
    Listing,
    NoCapacity,
)


def build_runtime(
    instance_id: str,
    hosts: Sequence[DockerHostConfig],
    *,
    network_name: str = "",
    credential_delivery: CredentialDelivery = "stdin",
) -> ContainerRuntime:
    """One runtime over ``hosts``: Docker, Swarm, or both behind a router."""
    containers = [h for h in hosts if h.mode == "container"]
    swarms = [h for h in hosts if h.mode == "swarm"]
    parts: list[ContainerRuntime] = []
    if containers:
        from orchestrator.runtime.docker_engine import DockerRuntime

        parts.append(
            DockerRuntime(
                instance_id,
                containers,
                network_name=network_name,
                credential_delivery=credential_delivery,
            )
        )
    if swarms:
        from orchestrator.runtime.swarm import SwarmRuntime

        parts.append(SwarmRuntime(instance_id, swarms))
    if len(parts) == 1:
        return parts[0]
    return CompositeRuntime(instance_id, parts)


class CompositeRuntime:
    """Routes by host name to the runtime that owns the host; merges listings and views.

    ``create`` goes to the first part (configuration order: container hosts, then swarm
    endpoints) that can place the spec now, so a pool allowed on both kinds prefers
    the daemon's own hosts and overflows to the swarm.
    """

    def __init__(self, instance_id: str, parts: Sequence[ContainerRuntime]) -> None:
        self.instance_id = instance_id
        self._parts = tuple(parts)

    def _owner(self, host: str) -> ContainerRuntime:
        for part in self._parts:
            if any(h.name == host for h in part.hosts()):
                return part
        raise HostUnavailable(host, "not a configured docker host")

    def _names(self, part: ContainerRuntime) -> set[str]:
        return {h.name for h in part.hosts()}

    def _allowed(self, part: ContainerRuntime, hosts: tuple[str, ...]) -> tuple[str, ...] | None:
        """``hosts`` narrowed to ``part``'s; None when the pool may not use ``part`` at all."""
        if not hosts:
            return ()
        mine = tuple(h for h in hosts if h in self._names(part))
        return mine or None

    async def start(self, on_event: EventCallback) -> None:
        await asyncio.gather(*(p.start(on_event) for p in self._parts))

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        reasons = []
        for part in self._parts:
            allowed = self._allowed(part, spec.hosts)
            if allowed is None:
                continue
            reason = part.placeable(spec.platform, spec.gpus, allowed)
            if reason:
                reasons.append(reason)
                continue
            return await part.create(spec)
        raise NoCapacity("; ".join(reasons) or f"no docker host among allowed {list(spec.hosts)}")

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        return await self._owner(info.host).start_container(info)

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        await self._owner(host).stop(host, container_id, timeout_s)

    async def remove(self, host: str, container_id: str) -> None:
        await self._owner(host).remove(host, container_id)

    async def list(self) -> Listing:
        listings = await asyncio.gather(*(p.list() for p in self._parts))
        containers: builtins.list[ContainerInfo] = []
        unreachable: set[str] = set()
        for listing in listings:
            containers.extend(listing.containers)
            unreachable |= listing.unreachable
        return Listing(containers=tuple(containers), unreachable=frozenset(unreachable))

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        return await self._owner(host).logs(host, container_id, tail)

    def hosts(self) -> Sequence[HostStatus]:
        return [h for p in self._parts for h in p.hosts()]

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        reasons = []
        for part in self._parts:
            allowed = self._allowed(part, hosts)
            if allowed is None:
                continue
            reason = part.placeable(platform, gpus, allowed)
            if not reason:
                return ""
            reasons.append(reason)
        return "; ".join(reasons) or f"no docker host among allowed {list(hosts)}"

    async def release_unused(self) -> None:
        for part in self._parts:
            await part.release_unused()

    async def aclose(self) -> None:
        for part in self._parts:
            await part.aclose()
