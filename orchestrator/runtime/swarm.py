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

This module is the async driver (threads, retries, the start wait, the order of steps);
each concern lives in a module of its own: connection, event stream and the instance's
shared objects in :mod:`~orchestrator.runtime.swarm_engine`, the blocking calls on one
runner's service in :mod:`~orchestrator.runtime.swarm_services`, which endpoint may take
a runner in :mod:`~orchestrator.runtime.swarm_placement`, and the pure spec rules in
:mod:`~orchestrator.runtime.swarm_spec`.

Labels are the only ownership record, as for containers: services, their task
containers (``ContainerSpec.Labels``), secrets, the overlay network and named volumes all
carry :func:`~orchestrator.runtime.labels_for`. A daemon started with an empty journal
therefore sees every runner service as an orphan and removes it (forge registration
first), which is what lets the daemon itself run as a Swarm service that may move.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import docker
import docker.errors
import docker.tls

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    ContainerInfo,
    ContainerSpec,
    ContainerStartError,
    EventCallback,
    GpuRequest,
    HostStatus,
    HostUnavailable,
    Listing,
    RuntimeFailure,
)
from orchestrator.runtime import swarm_placement as placement
from orchestrator.runtime.swarm_engine import (
    CONNECTION_ERRORS,
    HOST_RETRY_S,
    Endpoint,
    NotSwarmManager,
    check_manager,
    connect,
    describe,
    release,
    watch,
)
from orchestrator.runtime.swarm_services import (
    create_service,
    list_services,
    remove_runner,
    scale_to_zero,
    service_logs,
    service_state,
)
from orchestrator.runtime.swarm_spec import TERMINAL_STATES, node_status, service_info

T = TypeVar("T")

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
        if not hosts:
            raise ValueError("SwarmRuntime needs at least one swarm endpoint")
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate docker host names {names}")
        self.instance_id = instance_id
        self.network_name = network_name or default_network_name(instance_id)
        self._endpoints = {h.name: Endpoint(h) for h in hosts}
        self._max_concurrency = max(1, max_concurrency)
        self._start_wait_s = max(0.0, start_wait_s)
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_event: EventCallback | None = None
        self._label_filter = [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance_id}"]
        self._closed = False

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
        async with self._semaphore:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def _endpoint(self, name: str) -> Endpoint:
        try:
            return self._endpoints[name]
        except KeyError:
            raise HostUnavailable(name, "not a configured swarm endpoint") from None

    def _connect_sync(self, ep: Endpoint) -> None:
        if ep.client is None:
            ep.client = connect(ep.config)
        else:
            check_manager(ep.client)
        ep.api_version = str(ep.client.api.api_version)
        ep.nodes = tuple(node_status(n) for n in ep.client.api.nodes())

    async def _connected(self, ep: Endpoint, *, force: bool = False) -> bool:
        if ep.client is not None and ep.ok:
            return True
        now = time.monotonic()
        if not force and now - ep.last_attempt < HOST_RETRY_S:
            return False
        ep.last_attempt = now
        try:
            await self._run(self._connect_sync, ep)
        except (docker.errors.DockerException, NotSwarmManager, *CONNECTION_ERRORS) as exc:
            ep.ok, ep.error = (
                False,
                describe(exc) if not isinstance(exc, RuntimeFailure) else str(exc),
            )
            return False
        ep.ok, ep.error = True, ""
        self._start_watcher(ep)
        return True

    async def _require(self, name: str) -> Endpoint:
        ep = self._endpoint(name)
        if not await self._connected(ep):
            raise HostUnavailable(name, ep.error)
        return ep

    def _translate(self, ep: Endpoint, exc: BaseException, op: str, what: str) -> RuntimeFailure:
        """Only the SDK's and the transport's errors are translated; anything else is a bug
        and propagates as itself."""
        if isinstance(exc, CONNECTION_ERRORS) or (
            isinstance(exc, docker.errors.DockerException)
            and not isinstance(exc, docker.errors.APIError)
            and "connection" in str(exc).lower()
        ):
            ep.ok, ep.error = False, describe(exc)
            return HostUnavailable(ep.name, f"{op} {what}: {describe(exc)}")
        message = f"{op} {what} on {ep.name} failed: {describe(exc)}"
        if op in {"create", "start"}:
            return ContainerStartError(message, host=ep.name, container_id="")
        return RuntimeFailure(message)

    async def _call(self, ep: Endpoint, op: str, what: str, fn: Callable[[], T]) -> T:
        try:
            return await self._run(fn)
        except RuntimeFailure:
            raise
        except (docker.errors.DockerException, *CONNECTION_ERRORS) as exc:
            raise self._translate(ep, exc, op, what) from exc

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, on_event: EventCallback) -> None:
        """Connect every endpoint (a failing one is marked down and retried later) and
        start watching events."""
        self._loop = asyncio.get_running_loop()
        self._on_event = on_event
        self._closed = False
        await asyncio.gather(*(self._connected(e, force=True) for e in self._endpoints.values()))
        await asyncio.gather(
            *(
                asyncio.to_thread(e.watching.wait, 5.0)
                for e in self._endpoints.values()
                if e.watcher is not None
            )
        )

    async def aclose(self) -> None:
        """Stop watching and close clients; services keep running (adoption)."""
        self._closed = True
        for ep in self._endpoints.values():
            ep.stop.set()
            if ep.stream is not None:
                with contextlib.suppress(Exception):
                    ep.stream.close()
        for ep in self._endpoints.values():
            if ep.watcher is not None:
                await asyncio.to_thread(ep.watcher.join, 5.0)
                ep.watcher = None
            if ep.client is not None:
                with contextlib.suppress(Exception):
                    ep.client.close()
                ep.client = None
            ep.ok, ep.error, ep.network_ready = False, "closed", False

    # --- events -----------------------------------------------------------------------------

    def _start_watcher(self, ep: Endpoint) -> None:
        if self._on_event is None or self._loop is None or self._closed:
            return
        if ep.watcher is not None and ep.watcher.is_alive():
            return
        ep.stop, ep.watching = threading.Event(), threading.Event()
        ep.watcher = threading.Thread(
            target=watch,
            args=(ep, self.instance_id, ep.client, ep.stop, self._loop, self._on_event),
            name=f"swarm-events-{ep.name}",
            daemon=True,
        )
        ep.watcher.start()

    # --- placement --------------------------------------------------------------------------

    def hosts(self) -> Sequence[HostStatus]:
        """In-memory view (no I/O): per endpoint, its nodes as last listed."""
        return [placement.status(ep) for ep in self._endpoints.values()]

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        """'' when some swarm endpoint has a ready node of that arch with enough GPUs.

        The pool's own constraints and free resources are left to the engine: when no
        node satisfies them, ``start_container`` raises with the engine's reason.
        """
        return placement.placeable(self._endpoints.values(), platform, gpus, hosts)

    async def _place(self, spec: ContainerSpec) -> Endpoint:
        await asyncio.gather(*(self._connected(e) for e in self._endpoints.values() if not e.ok))
        return placement.choose(builtins.list(self._endpoints.values()), spec)

    # --- runners ------------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Place (endpoint only: nodes are the engine's choice), create the credential secret
        and the service. Raises NoCapacity, HostUnavailable or ContainerStartError."""
        if spec.instance_id and spec.instance_id != self.instance_id:
            raise ContainerStartError(
                f"spec is for instance {spec.instance_id!r}, this runtime is {self.instance_id!r}"
            )
        ep = await self._place(spec)
        attrs = await self._call(
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
        ep = await self._require(info.host)
        deadline = time.monotonic() + self._start_wait_s
        delay = 0.1
        current = info
        while True:
            state = await self._call(
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
        ep = await self._require(host)

        await self._call(
            ep,
            "stop",
            container_id,
            lambda: scale_to_zero(ep.client, container_id, self.instance_id, timeout_s),
        )

    async def remove(self, host: str, container_id: str) -> None:
        """Remove the service (the engine removes its task container) and its secret.
        Gone already is success."""
        ep = await self._require(host)

        await self._call(
            ep,
            "remove",
            container_id,
            lambda: remove_runner(ep.client, container_id, self.instance_id),
        )
        ep.services.discard(container_id)

    async def list(self) -> Listing:
        """Our runner services on every endpoint that answers, plus the ones that did not."""

        async def one(ep: Endpoint) -> builtins.list[ContainerInfo] | None:
            if not await self._connected(ep):
                return None
            try:
                return await self._run(list_services, ep, self._label_filter)
            except (docker.errors.DockerException, *CONNECTION_ERRORS) as exc:
                ep.ok, ep.error = False, describe(exc)
                return None

        endpoints = list(self._endpoints.values())
        results = await asyncio.gather(*(one(e) for e in endpoints))
        found: builtins.list[ContainerInfo] = []
        for ep, result in zip(endpoints, results, strict=True):
            if result is not None:
                ep.services = {i.id for i in result}
                found.extend(result)
        unreachable = frozenset(
            e.name for e, r in zip(endpoints, results, strict=True) if r is None
        )
        return Listing(containers=tuple(found), unreachable=unreachable)

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        """The service's last ``tail`` lines; a failed task's engine error is appended, so
        the journalled tail says why a runner never ran. '' when gone."""
        ep = await self._require(host)

        return await self._call(
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

        for ep in self._endpoints.values():
            if await self._connected(ep, force=True):
                await self._call(
                    ep,
                    "release",
                    self.network_name,
                    functools.partial(release, ep.client, self._label_filter),
                )
                ep.network_ready = False
