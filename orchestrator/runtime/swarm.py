"""The Swarm runtime: one Swarm service per runner, placed by the engine.

:class:`SwarmRuntime` implements :class:`~orchestrator.runtime.ContainerRuntime` over
Docker endpoints configured with ``mode: swarm`` (each a Swarm *manager*). What a runner's
service looks like, and why, is in :mod:`orchestrator.runtime.swarm_spec`; this module
does the I/O:

* ``create`` makes the credential secret and the service. The engine schedules the task
  at once (a service has no "created, not started" state), so ``start_container`` waits,
  clamped to ``start_wait_s``, for the task to run, and turns what the engine said into
  errors: a task ``pending`` with "no suitable node (...)" or ``rejected`` (image missing
  on the node...) raises :class:`ContainerStartError` with the engine's words, which the
  reconciler shows as the pool's ``pool_unavailable`` reason and backs off on.
* ``stop`` scales the service to zero replicas: the engine sends SIGTERM and, after the
  service's grace period, SIGKILL; logs and exit code stay readable until ``remove``
  removes the service and its secret.
* ``list`` reads our services (label filter: managed + this instance) and their tasks,
  refreshes the node view used by ``placeable`` and ``hosts``, and sweeps secrets of ours
  that no service uses any more (a crash between secret and service).
* Engine events (container die/oom/destroy of our task containers on the manager's own
  node, removal of our services) nudge the reconciler; task state changes on other nodes
  are not events in the Docker API, so the periodic reconcile catches those.

This module is the driver of the runner operations (the start wait, the order of steps);
each concern lives in a module of its own: the endpoints' connections, worker threads,
event watchers, listing and error translation in
:mod:`~orchestrator.runtime.swarm_endpoints`; connection, event stream and the
instance's shared objects in :mod:`~orchestrator.runtime.swarm_engine`; the blocking
calls on one runner's service in :mod:`~orchestrator.runtime.swarm_services`; which
endpoint may take a runner in :mod:`~orchestrator.runtime.swarm_placement`; and the pure
spec rules in :mod:`~orchestrator.runtime.swarm_spec`.

Labels are the only ownership record, as for containers: services, their task
containers (``ContainerSpec.Labels``), secrets, the overlay network and named volumes all
carry :func:`~orchestrator.runtime.labels_for`. A daemon started with an empty journal
therefore sees every runner service as an orphan and removes it (forge registration
first), which is what lets the daemon itself run as a Swarm service that may move.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Sequence

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    ContainerInfo,
    ContainerSpec,
    ContainerStartError,
    EventCallback,
    GpuRequest,
    HostStatus,
    Listing,
)
from orchestrator.runtime.swarm_endpoints import SwarmEndpoints
from orchestrator.runtime.swarm_engine import release
from orchestrator.runtime.swarm_services import (
    create_service,
    remove_runner,
    scale_to_zero,
    service_logs,
    service_state,
)
from orchestrator.runtime.swarm_spec import TERMINAL_STATES, service_info

#: How long ``start_container`` waits for the engine to run the task (then it returns the
#: task as it is; a task still being placed or pulled counts as live).
START_WAIT_S = 30.0

#: Swarm scheduler messages that mean "no node can take this task now".
_UNPLACEABLE = ("no suitable node",)


def default_network_name(instance_id: str) -> str:
    """The instance's overlay network (distinct from the container runtime's bridge, so one
    engine can serve both modes)."""
    return f"runner-orchestrator-{instance_id}-swarm"


class SwarmRuntime:
    """:class:`~orchestrator.runtime.ContainerRuntime` over Swarm manager endpoints.

    A spec's ``constraints`` (the pool option) are appended to the platform's own.
    """

    def __init__(
        self,
        instance_id: str,
        hosts: Sequence[DockerHostConfig],
        *,
        network_name: str = "",
        max_concurrency: int = 4,
        start_wait_s: float = START_WAIT_S,
    ) -> None:
        self.endpoints = SwarmEndpoints(instance_id, hosts, max_concurrency=max_concurrency)
        self.instance_id = instance_id
        self.network_name = network_name or default_network_name(instance_id)
        self._start_wait_s = max(0.0, start_wait_s)

    # --- lifecycle (the endpoints') --------------------------------------------------------

    async def start(self, on_event: EventCallback) -> None:
        """Connect every endpoint (a failing one is marked down and retried later) and
        start watching events."""
        await self.endpoints.start(on_event)

    async def aclose(self) -> None:
        """Stop watching and close clients; services keep running (adoption)."""
        await self.endpoints.aclose()

    # --- placement --------------------------------------------------------------------------

    def hosts(self) -> Sequence[HostStatus]:
        """In-memory view (no I/O): per endpoint, its nodes as last listed."""
        return self.endpoints.hosts()

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        """'' when some swarm endpoint has a ready node of that arch with enough GPUs.

        The pool's own constraints and free resources are left to the engine: when no
        node satisfies them, ``start_container`` raises with the engine's reason.
        """
        return self.endpoints.placeable(platform, gpus, hosts)

    # --- runners ------------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Place (endpoint only: nodes are the engine's choice), create the credential secret
        and the service. Raises NoCapacity, HostUnavailable or ContainerStartError."""
        if spec.instance_id and spec.instance_id != self.instance_id:
            raise ContainerStartError(
                f"spec is for instance {spec.instance_id!r}, this runtime is {self.instance_id!r}"
            )
        ep = await self.endpoints.place(spec)
        attrs = await self.endpoints.call(
            ep,
            "create",
            spec.name,
            functools.partial(
                create_service,
                ep,
                spec,
                instance_id=self.instance_id,
                network_name=self.network_name,
            ),
        )
        # Created, not yet seen scheduled: ``start_container`` waits for the task.
        info = dataclasses.replace(service_info(ep.name, attrs, None), status="created")
        ep.services.add(info.id)
        return info

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        """Wait (clamped) until the engine runs the task; raise with its reason when no
        node can take it or the node rejected it."""
        ep = await self.endpoints.require(info.host)
        deadline = time.monotonic() + self._start_wait_s
        delay = 0.1
        current = info
        while True:
            state = await self.endpoints.call(
                ep, "start", info.name, lambda: service_state(ep.client, info.id)
            )
            if state is None:
                raise ContainerStartError(
                    f"service {info.name} vanished before its task ran",
                    host=ep.name,
                    container_id=info.id,
                )
            current = service_info(ep.name, state[0], state[1])
            if current.status == "pending" and any(m in current.error for m in _UNPLACEABLE):
                raise ContainerStartError(
                    f"swarm {ep.name} cannot place {info.name}: {current.error}",
                    host=ep.name,
                    container_id=info.id,
                )
            if current.status == "rejected":
                raise ContainerStartError(
                    f"swarm {ep.name} rejected {info.name}: {current.error}",
                    host=ep.name,
                    container_id=info.id,
                )
            if current.status == "running" or current.status in TERMINAL_STATES:
                return current
            if time.monotonic() >= deadline:
                return current
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        """Scale the service to zero: SIGTERM, SIGKILL after the service's grace period
        (fixed at create to the reconciler's 10 s). Waits, clamped, for the task to end."""
        ep = await self.endpoints.require(host)

        await self.endpoints.call(
            ep,
            "stop",
            container_id,
            lambda: scale_to_zero(ep.client, container_id, self.instance_id, timeout_s),
        )

    async def remove(self, host: str, container_id: str) -> None:
        """Remove the service (the engine removes its task container) and its secret.
        Gone already is success."""
        ep = await self.endpoints.require(host)

        await self.endpoints.call(
            ep,
            "remove",
            container_id,
            lambda: remove_runner(ep.client, container_id, self.instance_id),
        )
        ep.services.discard(container_id)

    async def list(self) -> Listing:
        """Our runner services on every endpoint that answers, plus the ones that did not."""
        return await self.endpoints.list()

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        """The service's last ``tail`` lines; a failed task's engine error is appended, so
        the journalled tail says why a runner never ran. '' when gone."""
        ep = await self.endpoints.require(host)

        return await self.endpoints.call(
            ep, "logs", container_id, functools.partial(service_logs, ep, container_id, tail)
        )

    # --- clean-up -------------------------------------------------------------------------------

    async def remove_all(self) -> int:
        """Remove every runner service of this instance on reachable endpoints (drain, tests)."""
        listing = await self.list()
        for info in listing.containers:
            await self.remove(info.host, info.id)
        return len(listing.containers)

    async def release_unused(self) -> None:
        """Remove this instance's overlay network, secrets and named volumes where unused.

        The network is retried (clamped to :data:`NETWORK_RELEASE_S`) while the last
        removed services' containers are still being torn down by the engine.
        """

        for ep in self.endpoints.all():
            if await self.endpoints.connected(ep, force=True):
                await self.endpoints.call(
                    ep,
                    "release",
                    self.network_name,
                    functools.partial(release, ep.client, self.endpoints.label_filter),
                )
                ep.network_ready = False
