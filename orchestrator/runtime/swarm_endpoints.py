"""The swarm manager endpoints of one :class:`~orchestrator.runtime.swarm.SwarmRuntime`.

Split from :mod:`orchestrator.runtime.swarm` (the runner operations: create, the start
wait, stop, remove, logs). :class:`SwarmEndpoints` owns every
:class:`~orchestrator.runtime.swarm_engine.Endpoint` and what is held about it: its
client and health (connect, retry no faster than ``HOST_RETRY_S``, reconnect), its event
watcher thread, its node view (for ``hosts`` and ``placeable``) and its service ids
(refreshed by ``list``). Every blocking call runs on a worker thread under one semaphore,
and only the SDK's and the transport's errors are translated, here, into
:class:`~orchestrator.runtime.HostUnavailable`, :class:`~orchestrator.runtime.ContainerStartError`
or :class:`~orchestrator.runtime.RuntimeFailure`; anything else is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import docker
import docker.errors

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
from orchestrator.runtime.docker_hosts import SDK_ERRORS
from orchestrator.runtime.swarm_engine import (
    CONNECTION_ERRORS,
    HOST_RETRY_S,
    Endpoint,
    NotSwarmManager,
    check_manager,
    connect,
    describe,
    watch,
)
from orchestrator.runtime.swarm_services import list_services
from orchestrator.runtime.swarm_spec import node_status

T = TypeVar("T")


class SwarmEndpoints:
    """Connections, worker threads, event watchers and error translation for a runtime's
    swarm endpoints (validated: at least one, unique names)."""

    def __init__(
        self, instance_id: str, hosts: Sequence[DockerHostConfig], *, max_concurrency: int = 4
    ) -> None:
        if not hosts:
            raise ValueError("SwarmRuntime needs at least one swarm endpoint")
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate docker host names {names}")
        self.instance_id = instance_id
        self._endpoints = {h.name: Endpoint(h) for h in hosts}
        self._max_concurrency = max(1, max_concurrency)
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_event: EventCallback | None = None
        #: This instance's objects (services, secrets, network, volumes).
        self.label_filter = [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance_id}"]
        self._closed = False

    def all(self) -> builtins.list[Endpoint]:
        return builtins.list(self._endpoints.values())

    # --- plumbing ------------------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` on a worker thread, at most ``max_concurrency`` at a time."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
        async with self._semaphore:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def get(self, name: str) -> Endpoint:
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

    async def connected(self, ep: Endpoint, *, force: bool = False) -> bool:
        """True when ``ep`` answers; a down one is retried at most every ``HOST_RETRY_S``
        (``force``: now)."""
        if ep.client is not None and ep.ok:
            return True
        now = time.monotonic()
        if not force and now - ep.last_attempt < HOST_RETRY_S:
            return False
        ep.last_attempt = now
        try:
            await self.run(self._connect_sync, ep)
        except (docker.errors.DockerException, NotSwarmManager, *CONNECTION_ERRORS) as exc:
            ep.ok, ep.error = (
                False,
                describe(exc) if not isinstance(exc, RuntimeFailure) else str(exc),
            )
            return False
        ep.ok, ep.error = True, ""
        self._start_watcher(ep)
        return True

    async def require(self, name: str) -> Endpoint:
        """The endpoint ``name``, connected; :class:`HostUnavailable` otherwise."""
        ep = self.get(name)
        if not await self.connected(ep):
            raise HostUnavailable(name, ep.error)
        return ep

    # --- translation ---------------------------------------------------------------------------

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

    async def call(self, ep: Endpoint, op: str, what: str, fn: Callable[[], T]) -> T:
        """``fn`` (one step ``op`` on ``what``) on a worker thread, its errors translated."""
        try:
            return await self.run(fn)
        except RuntimeFailure:
            raise
        except (docker.errors.DockerException, *CONNECTION_ERRORS) as exc:
            raise self._translate(ep, exc, op, what) from exc

    # --- connections and events ----------------------------------------------------------------

    async def start(self, on_event: EventCallback) -> None:
        """Connect every endpoint (a failing one is marked down and retried later) and
        start watching events."""
        self._loop = asyncio.get_running_loop()
        self._on_event = on_event
        self._closed = False
        await asyncio.gather(*(self.connected(e, force=True) for e in self._endpoints.values()))
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
                # Best effort, racing the reader thread (as for container hosts): the SDK's
                # close reads the response the reader may be tearing down, and fails then
                # with whatever that half-closed response raises (AttributeError on _fp).
                with contextlib.suppress(Exception):
                    ep.stream.close()
        for ep in self._endpoints.values():
            if ep.watcher is not None:
                await asyncio.to_thread(ep.watcher.join, 5.0)
                ep.watcher = None
            if ep.client is not None:
                with contextlib.suppress(*SDK_ERRORS):  # our own bug here is not swallowed
                    ep.client.close()
                ep.client = None
            ep.ok, ep.error, ep.network_ready = False, "closed", False

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

    # --- placement and listing -----------------------------------------------------------------

    def hosts(self) -> Sequence[HostStatus]:
        """In-memory view (no I/O): per endpoint, its nodes as last listed."""
        return [placement.status(ep) for ep in self._endpoints.values()]

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        """'' when some endpoint has a ready node of that arch with enough GPUs."""
        return placement.placeable(self._endpoints.values(), platform, gpus, hosts)

    async def place(self, spec: ContainerSpec) -> Endpoint:
        """The endpoint to take a runner (down ones are retried first, when due)."""
        await asyncio.gather(*(self.connected(e) for e in self._endpoints.values() if not e.ok))
        return placement.choose(self.all(), spec)

    async def list(self) -> Listing:
        """Our runner services on every endpoint that answers, plus the ones that did not."""

        async def one(ep: Endpoint) -> builtins.list[ContainerInfo] | None:
            if not await self.connected(ep):
                return None
            try:
                return await self.run(list_services, ep, self.label_filter)
            except (docker.errors.DockerException, *CONNECTION_ERRORS) as exc:
                ep.ok, ep.error = False, describe(exc)
                return None

        endpoints = self.all()
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
