"""The Docker Engine runtime: runner containers on one or more Docker endpoints.

Each concern of it reads in a module of its own; :class:`DockerRuntime` is the driver
that places runners and orders the steps of each operation:

* :mod:`~orchestrator.runtime.docker_hosts`: the endpoints (:class:`HostPool`, which
  this runtime is built on): client, health and reconnect, the worker threads every
  blocking SDK call runs in, event watcher start and stop, and how an SDK failure becomes
  :class:`HostUnavailable`, :class:`ContainerStartError` or :class:`RuntimeFailure` (so
  the reconciler never sees a ``docker.errors`` type);
* :mod:`~orchestrator.runtime.docker_create`: spec -> ``docker create`` with the
  hardening, and credential delivery (a stdin delivery is attached at ``create`` and
  held here, by container id, until ``start_container`` writes it; ``remove`` and
  ``aclose`` close any still held);
* :mod:`~orchestrator.runtime.docker_containers`: listing (adoption) and the ownership
  check before ``stop``/``remove``, by labels only;
* :mod:`~orchestrator.runtime.docker_events`: the event stream reader threads;
* :mod:`~orchestrator.runtime.docker_network`: the instance network and named volumes.

Why the driver works as it does:

* **The SDK is blocking** (``requests``), so every call runs in a worker thread under one
  semaphore that bounds how many threads hammer the engines at once (STYLE.md §5 item
  11). It admits as many calls as the reconciler spawns runners at once (8), on the
  runtime's own thread pool of that size: on asyncio's shared default pool (``cpu_count +
  4`` threads, 6 on two cores, also used by the forge providers) and a semaphore of 4, a
  burst's Docker calls queued behind each other and behind forge calls
  (docs/benchmarks.md).
* **Hosts fail independently.** A host that does not answer is marked down
  (:meth:`DockerRuntime.hosts`), left out of placement and retried on later calls, while the
  others keep working. ``list()`` reports it in ``Listing.unreachable`` so the reconciler
  does not mistake "unknown" for "gone".
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    ContainerInfo,
    ContainerSpec,
    ContainerStartError,
    CredentialDelivery,
    GpuRequest,
    Listing,
    NoCapacity,
    RuntimeFailure,
)
from orchestrator.runtime import container_info as labelled_info
from orchestrator.runtime.docker_containers import (
    NotOurs,
    dedupe,
    list_sync,
    logs_sync,
    remove_sync,
    stop_sync,
)
from orchestrator.runtime.docker_containers import info as container_info
from orchestrator.runtime.docker_create import (
    DOCKER_SOCKET,
    LOG_OPTS,
    StdinDelivery,
    create_sync,
    start_sync,
)
from orchestrator.runtime.docker_events import EVENT_ACTIONS, EVENTS_BACKOFF_S
from orchestrator.runtime.docker_hosts import (
    API_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    HOST_RETRY_S,
    LABEL_HOST,
    SDK_ERRORS,
    Host,
    HostPool,
    mark_down,
    translate,
)
from orchestrator.runtime.docker_network import (
    default_network_name,
    ensure_network,
    remove_network,
    remove_volumes,
)
from orchestrator.runtime.placement import choose_host

# Names that lived here before the split stay importable from here.
__all__ = [
    "API_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "DEFAULT_MAX_CONCURRENCY",
    "DOCKER_SOCKET",
    "EVENTS_BACKOFF_S",
    "EVENT_ACTIONS",
    "HOST_RETRY_S",
    "LABEL_HOST",
    "LOG_OPTS",
    "DockerRuntime",
    "NotOurs",
    "default_network_name",
]

#: SDK calls in flight at once, all hosts together: the reconciler's spawn concurrency.
DEFAULT_MAX_CONCURRENCY = 8


class DockerRuntime(HostPool):
    """:class:`~orchestrator.runtime.ContainerRuntime` over Docker Engine endpoints.

    ``network_name`` defaults to ``runner-orchestrator-<instance_id>``; ``credential_delivery``
    is the daemon-wide default, but each spec carries its own mode and that one is used.
    """

    def __init__(
        self,
        instance_id: str,
        hosts: Sequence[DockerHostConfig],
        *,
        network_name: str = "",
        credential_delivery: CredentialDelivery = "stdin",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        if not hosts:
            raise ValueError("DockerRuntime needs at least one docker host")
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate docker host names {names}")
        super().__init__(
            instance_id,
            hosts,
            network_name=network_name or default_network_name(instance_id),
            max_concurrency=max_concurrency,
        )
        self.credential_delivery = credential_delivery
        #: stdin deliveries attached at create, written at start (container id -> it)
        self._stdin: dict[str, StdinDelivery] = {}
        self._stdin_lock = threading.Lock()

    # --- placement --------------------------------------------------------------------------

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        """'' when a live host could take such a container now, else the reason why not."""
        try:
            choose_host(self.hosts(), platform, gpus, hosts)
        except NoCapacity as exc:
            return str(exc)
        return ""

    async def _place(self, spec: ContainerSpec) -> Host:
        """Choose a host, first giving hosts that were down a chance to come back."""
        await asyncio.gather(*(self._connected(h) for h in self._hosts.values() if not h.ok))
        name = choose_host(self.hosts(), spec.platform, spec.gpus, spec.hosts)
        return self._hosts[name]

    # --- containers -------------------------------------------------------------------------

    def _create_sync(self, client: Any, spec: ContainerSpec, host: str) -> ContainerInfo:
        """Create, deliver the credential, return the created container (blocking). A
        stdin delivery is kept here in the worker thread, so a caller cancelled meanwhile
        cannot lose it: ``remove`` (or ``aclose``) closes it."""
        container_id, labels, delivery = create_sync(
            client, spec, host, instance_id=self.instance_id, network_name=self.network_name
        )
        if delivery is not None:
            self._hold_stdin(delivery)
        return labelled_info(
            labels, container_id=container_id, name=spec.name, host=host, status="created"
        )

    def _hold_stdin(self, delivery: StdinDelivery) -> None:
        with self._stdin_lock:
            self._stdin[delivery.container_id] = delivery

    def _take_stdin(self, container_id: str) -> StdinDelivery | None:
        with self._stdin_lock:
            return self._stdin.pop(container_id, None)

    def _close_stdin(self, container_id: str | None = None) -> None:
        """Close the held stdin delivery of one container, or (None) all of them."""
        with self._stdin_lock:
            if container_id is None:
                held, self._stdin = list(self._stdin.values()), {}
            else:
                one = self._stdin.pop(container_id, None)
                held = [one] if one is not None else []
        for delivery in held:
            delivery.close()

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Place, create (not start) and deliver the credential.

        Raises :class:`NoCapacity` (nothing fits), :class:`HostUnavailable` (the chosen
        host stopped answering) or :class:`ContainerStartError` (the engine said no: image
        missing or not for that platform, name taken, bad network...).
        """
        if spec.instance_id and spec.instance_id != self.instance_id:
            raise ContainerStartError(
                f"spec is for instance {spec.instance_id!r}, this runtime is {self.instance_id!r}"
            )
        host = await self._place(spec)
        try:
            if spec.network is None and not host.network_ready:
                await self._run(ensure_network, host.client, self.network_name, self._labels)
                host.network_ready = True
            info = await self._run(self._create_sync, host.client, spec, host.name)
        except RuntimeFailure:
            raise
        except SDK_ERRORS as exc:
            raise self._translate(host, exc, "create", spec.name) from exc
        host.containers.add(info.id)
        return info

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        """Start a created container (stdin delivery: and write its credential) and
        return it as running. Nothing is read back (one engine call fewer per runner): a
        container that exits at once shows in the event stream and the next listing.

        A start the engine refuses (no GPU driver here, bad mount, exec format) raises
        :class:`ContainerStartError` carrying host and container id; the container stays,
        in ``created`` state, for the reconciler to read and remove. A credential that
        could not be written raises it too: that container runs with stdin at end of
        file, its entrypoint exits non-zero, and the reconciler removes it the same way.
        """
        delivery = self._take_stdin(info.id)
        try:
            host = await self._require(info.host)
        except BaseException:
            if delivery is not None:
                delivery.close()
            raise
        try:
            await self._run(start_sync, host.client, info.id, delivery)
        except ContainerStartError as exc:
            raise ContainerStartError(str(exc), host=host.name, container_id=info.id) from exc
        except SDK_ERRORS as exc:
            raise self._translate(host, exc, "start", info.name, info.id) from exc
        finally:
            # start_sync closes it; this covers a call cancelled before its thread ran
            if delivery is not None:
                delivery.close()
        return dataclasses.replace(info, status="running")

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, SIGKILL after ``timeout_s``. Gone already is success; another
        instance's container raises :class:`NotOurs`."""
        h = await self._require(host)
        try:
            await self._run(stop_sync, h.client, container_id, self.instance_id, timeout_s)
        except RuntimeFailure:
            raise
        except SDK_ERRORS as exc:
            raise self._translate(h, exc, "stop", container_id, container_id) from exc

    async def remove(self, host: str, container_id: str) -> None:
        """Force-remove with anonymous volumes. Gone already (or being removed) is success."""
        self._close_stdin(container_id)
        h = await self._require(host)
        try:
            await self._run(remove_sync, h.client, container_id, self.instance_id)
        except RuntimeFailure:
            raise
        except SDK_ERRORS as exc:
            raise self._translate(h, exc, "remove", container_id, container_id) from exc
        h.containers.discard(container_id)

    async def list(self) -> Listing:
        """This instance's containers on every host that answers, plus the ones that did not.

        Hosts that were down are retried here, so a recovered host reappears on the next
        reconcile. A host's ``containers`` count is refreshed from what it reports.
        """

        async def one(host: Host) -> builtins.list[tuple[ContainerInfo, str]] | None:
            if not await self._connected(host):
                return None
            try:
                attrs = await self._run(list_sync, host.client, self._label_filter)
            except SDK_ERRORS as exc:  # the host goes to Listing.unreachable
                mark_down(host, exc)
                return None
            return [
                (
                    container_info(host.name, a),
                    ((a.get("Config") or {}).get("Labels") or {}).get(LABEL_HOST, ""),
                )
                for a in attrs
            ]

        hosts = builtins.list(self._hosts.values())
        results = await asyncio.gather(*(one(h) for h in hosts))
        containers = dedupe([i for r in results if r is not None for i in r])
        for host in hosts:
            host.containers = {i.id for i in containers if i.host == host.name}
        unreachable = frozenset(h.name for h, r in zip(hosts, results, strict=True) if r is None)
        return Listing(containers=containers, unreachable=unreachable)

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        """The last ``tail`` lines (stdout and stderr interleaved) as text; '' if gone."""
        h = await self._require(host)
        try:
            data = await self._run(logs_sync, h.client, container_id, tail)
        except SDK_ERRORS as exc:
            raise self._translate(h, exc, "logs", container_id, container_id) from exc
        return data.decode("utf-8", errors="replace")

    # --- clean-up primitives (drain, tests) ----------------------------------------------------

    async def remove_all(self) -> int:
        """Force-remove every container of this instance on every reachable host (drain).
        Returns how many were removed; unreachable hosts are skipped."""
        listing = await self.list()
        for info in listing.containers:
            await self.remove(info.host, info.id)
        return len(listing.containers)

    async def remove_network(self) -> builtins.list[str]:
        """Remove the instance network on each reachable host if it is ours (instance
        label) and no container is attached. Returns the hosts where it was removed."""
        done = []
        for host in self._hosts.values():
            if not await self._connected(host, force=True):
                continue
            try:
                if await self._run(
                    remove_network, host.client, self.network_name, self._label_filter
                ):
                    done.append(host.name)
                host.network_ready = False
            except SDK_ERRORS as exc:  # best effort at drain; host marked down
                mark_down(host, exc)
        return done

    async def release_unused(self) -> None:
        """The protocol's shutdown clean-up: unused network and volumes of this instance."""
        await self.remove_network()
        await self.remove_volumes()

    async def remove_volumes(self) -> int:
        """Remove this instance's labelled volumes that no container uses (drain). Named
        volumes are caches meant to outlive runners, so this is an explicit call."""
        total = 0
        for host in self._hosts.values():
            if not await self._connected(host, force=True):
                continue
            try:
                total += await self._run(remove_volumes, host.client, self._label_filter)
            except SDK_ERRORS as exc:  # best effort at drain; host marked down
                mark_down(host, exc)
        return total

    async def aclose(self) -> None:
        """Close held stdin deliveries (their containers never start: recovery removes
        them), stop the watchers, close the clients. Containers keep running."""
        self._close_stdin()
        await super().aclose()

    # --- translation ------------------------------------------------------------------------

    def _translate(
        self, host: Host, exc: BaseException, op: str, what: str, container_id: str = ""
    ) -> RuntimeFailure:
        """SDK error -> runtime error (see :func:`~orchestrator.runtime.docker_hosts.translate`)."""
        return translate(host, exc, op, what, container_id)
