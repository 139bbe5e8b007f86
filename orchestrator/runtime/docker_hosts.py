"""Docker endpoints: connection, health and reconnect, threads, and how SDK failures read.

Split from :mod:`orchestrator.runtime.docker_engine` because these rules belong to an
endpoint, not to any one operation: how a client is built (TLS, ssh, timeouts, pool
size), what "the endpoint did not answer" means as opposed to "the engine said no", and
which runtime error each SDK failure becomes. Every operation of the runtime ends in
:func:`translate`, so the boundary between a down host and a refused request is drawn
once, here.

* **One ``DockerClient`` per host for the daemon's life**, its connection pool sized for
  every concurrent call plus the event stream and a ping, so no call opens and drops a
  connection of its own.
* **Hosts fail independently.** A host that does not answer is marked down
  (:func:`mark_down`), left out of placement and retried (:meth:`HostPool._connected`) at
  most every :data:`HOST_RETRY_S` by later calls, while the others keep working.
* **The SDK is blocking** (``requests``), so :class:`HostPool` runs every call in a
  worker thread of its own pool (see :mod:`orchestrator.runtime.docker_engine` for why
  its size), and starts one event reader thread per connected host.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import docker.tls
import requests.exceptions

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_PREFIX,
    ContainerStartError,
    EventCallback,
    HostStatus,
    HostUnavailable,
    RuntimeFailure,
    labels_for,
)
from orchestrator.runtime.docker_events import watch
from orchestrator.runtime.docker_network import ensure_network
from orchestrator.runtime.ssh_relay import SshRelay

T = TypeVar("T")

#: Which configured host name created a container. Informational for operators, and lets
#: ``list()`` attribute a container correctly when one engine is configured under two names.
LABEL_HOST = f"{LABEL_PREFIX}.host"

#: Seconds between reconnect attempts to a host that was down (per call that needs it).
HOST_RETRY_S = 2.0
#: Per-request HTTP timeout towards an engine. ``stop`` adds its own grace period.
API_TIMEOUT_S = 60
#: Timeout of a connection attempt (version probe, ping): a blackholed tcp endpoint must not
#: hold a worker thread for API_TIMEOUT_S on every retry.
CONNECT_TIMEOUT_S = 10
#: Exceptions that mean "the endpoint did not answer", not "the engine said no".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)
#: What the docker SDK and its transport raise (requests' errors are OSErrors). Only these
#: are translated into runtime errors; anything else is a bug of ours and propagates.
SDK_ERRORS: tuple[type[BaseException], ...] = (docker.errors.DockerException, OSError)


@dataclasses.dataclass
class Engine:
    """Mutable state of one engine endpoint, a container host or a swarm manager: its
    client and health, and its event reader. Mutated on the event loop thread only; the
    reader thread touches just ``stream``/``watching`` (it reads ``stop``)."""

    config: DockerHostConfig
    client: Any = None
    ok: bool = False
    error: str = "not connected yet"
    last_attempt: float = float("-inf")
    network_ready: bool = False
    watcher: threading.Thread | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    stream: Any = None
    watching: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.config.name


@dataclasses.dataclass
class Host(Engine):
    """A container host: an :class:`Engine` and the containers this daemon placed there."""

    containers: set[str] = dataclasses.field(default_factory=set)


def status(host: Host) -> HostStatus:
    """In-memory view of one host (no I/O).

    ``containers`` counts this instance's containers on the host, exited ones included
    until removed (they still hold disk and a name); it is refreshed by ``list()`` and
    kept current by ``create``/``remove`` in between. Containers of other instances or
    tools on the same engine are not counted: ``max_containers`` is this daemon's share.
    """
    return HostStatus(
        name=host.name,
        url=host.config.url,
        ok=host.ok,
        arch=host.config.arch,
        gpus=host.config.gpus,
        max_containers=host.config.max_containers,
        containers=len(host.containers),
        error=host.error,
    )


class EngineAPI(docker.APIClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's API client, except that a host's own TLS trust is the one used.

    requests lets ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` in the environment replace
    a session's ``verify`` on every request (psf/requests#3829): with either set, as
    corporate and CI machines often have, a host configured with ``tls_ca`` was checked
    against the system bundle and refused ("self-signed certificate in certificate
    chain"), and ``tls_verify: false`` verified anyway. The host's setting wins here;
    with neither configured (``verify`` True) the environment may still pick the bundle.
    """

    def merge_environment_settings(
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if self.verify is not True:  # a CA file, or verification off: the host's choice
            settings["verify"] = self.verify
        return settings


class EngineClient(docker.DockerClient):  # type: ignore[misc]  # the SDK is untyped
    """``docker.DockerClient`` over :class:`EngineAPI`. The SDK's constructor does
    nothing but build its ``APIClient`` (docker 7.x), which this one replaces."""

    def __init__(self, **kwargs: Any) -> None:
        self.api = EngineAPI(**kwargs)


class RelayedClient(EngineClient):
    """A client of an ``ssh://`` engine, reached through the :class:`SshRelay` it owns
    (and closes with itself)."""

    def __init__(self, relay: SshRelay, **kwargs: Any) -> None:
        self.relay = relay
        super().__init__(base_url=relay.base_url, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.relay.close()


def make_client(config: DockerHostConfig, max_pool_size: int) -> Any:
    """Build and ping a client (blocking; runs in a thread).

    TLS only when certificates are configured. ``ssh://`` goes through the system ``ssh``
    binary (:mod:`orchestrator.runtime.ssh_relay`: the operator's ssh config and agent
    apply, and no paramiko); when it cannot connect, the error says what ssh said.
    """
    if config.url.startswith("ssh://"):
        return _make_relayed_client(config, max_pool_size)
    tls: Any = False
    if config.tls_ca or config.tls_cert or config.tls_key:
        cert = (
            (str(config.tls_cert), str(config.tls_key))
            if config.tls_cert and config.tls_key
            else None
        )
        tls = docker.tls.TLSConfig(
            client_cert=cert,
            ca_cert=str(config.tls_ca) if config.tls_ca else None,
            verify=config.tls_verify,
        )
    # The constructor already probes the engine's API version: short timeout for that.
    client = EngineClient(
        base_url=config.url,
        tls=tls,
        timeout=CONNECT_TIMEOUT_S,
        # every concurrent call, the event stream and a ping keep a pooled connection
        max_pool_size=max_pool_size,
    )
    return _ready(client)


def _make_relayed_client(config: DockerHostConfig, max_pool_size: int) -> Any:
    relay = SshRelay(config.url, CONNECT_TIMEOUT_S)
    try:
        return _ready(RelayedClient(relay, timeout=CONNECT_TIMEOUT_S, max_pool_size=max_pool_size))
    except SDK_ERRORS as exc:  # the constructor's version probe or the ping
        relay.wait_idle(1.0)  # ssh has exited: let its last words be read
        said = relay.last_error
        relay.close()
        if not said:
            raise
        raise ConnectionError(f"ssh to {config.url}: {said}") from exc
    except BaseException:
        relay.close()
        raise


def _ready(client: Any) -> Any:
    """Ping a new client; close it when that fails. Then give it the timeout for work."""
    try:
        ping(client)
    except BaseException:
        client.close()
        raise
    # Per-request timeouts win over the one the transport was built with (checked:
    # a 8 s stop succeeds on a client built with 3 s), so raise it for real work.
    client.api.timeout = API_TIMEOUT_S
    return client


def close(host: Host) -> None:
    """Close the host's client (its watcher already stopped); the host reads as closed."""
    if host.client is not None:
        with contextlib.suppress(*SDK_ERRORS):
            host.client.close()
        host.client = None
    host.ok = False
    host.error = "closed"
    host.network_ready = False


def ping(client: Any) -> None:
    """``GET /_ping`` with the short connect timeout (the SDK's ``ping()`` uses the long
    per-request one)."""
    response = client.api.get(f"{client.api.base_url}/_ping", timeout=CONNECT_TIMEOUT_S)
    response.raise_for_status()


def describe(exc: BaseException) -> str:
    """One line for logs and ``/status``: the engine's explanation when it gave one."""
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation
        if isinstance(explanation, bytes):
            explanation = explanation.decode("utf-8", errors="replace")
        return f"{exc.status_code}: {explanation or exc}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def mark_down(host: Host, exc: BaseException) -> None:
    host.ok = False
    host.error = describe(exc)


def translate(
    host: Host, exc: BaseException, op: str, what: str, container_id: str = ""
) -> RuntimeFailure:
    """SDK error (one of :data:`SDK_ERRORS`; callers catch only those) -> runtime error.
    Connection trouble also marks the host down; the engine refusing a create or start
    is a :class:`ContainerStartError`; anything else (a stop or remove the engine
    refused) a plain :class:`RuntimeFailure`."""
    if isinstance(exc, CONNECTION_ERRORS) or (
        isinstance(exc, docker.errors.DockerException)
        and not isinstance(exc, docker.errors.APIError)
        and "connection" in str(exc).lower()
    ):
        mark_down(host, exc)
        return HostUnavailable(host.name, f"{op} {what}: {describe(exc)}")
    if isinstance(exc, docker.errors.ImageNotFound):
        return ContainerStartError(
            f"{op} {what} on {host.name}: image not found locally ({describe(exc)})",
            host=host.name,
            container_id=container_id,
        )
    message = f"{op} {what} on {host.name} failed: {describe(exc)}"
    if op in {"create", "start"}:
        return ContainerStartError(message, host=host.name, container_id=container_id)
    return RuntimeFailure(message)


class HostPool:
    """The endpoints of one Docker runtime and the worker threads that talk to them.

    :class:`~orchestrator.runtime.docker_engine.DockerRuntime` is built on this: here is
    how a host gets (and regains) a live client, how blocking SDK calls are run, and how
    each host's event watcher is started and stopped; the runtime adds the operations.
    """

    def __init__(
        self,
        instance_id: str,
        hosts: Sequence[DockerHostConfig],
        *,
        network_name: str,
        max_concurrency: int,
    ) -> None:
        self.instance_id = instance_id
        self.network_name = network_name
        self._hosts = {h.name: Host(h) for h in hosts}
        self._max_concurrency = max(1, max_concurrency)
        self._semaphore: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_event: EventCallback | None = None
        self._labels = labels_for(instance_id)
        self._label_filter = [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance_id}"]
        self._closed = False

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking SDK call in one of this runtime's own worker threads, bounded by the
        semaphore. Own threads, not the loop's default pool: a forge adapter whose calls
        hang (a trickling forge) can fill the default pool, and must not stall Docker."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_concurrency, thread_name_prefix="docker-runtime"
            )
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        async with self._semaphore:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _host(self, name: str) -> Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise HostUnavailable(name, "not a configured docker host") from None

    async def _connected(self, host: Host, *, force: bool = False) -> bool:
        """Ensure ``host`` has a live client; retries a down host at most every
        ``HOST_RETRY_S`` (unless ``force``). Returns whether it is usable now."""
        if host.client is not None and host.ok:
            return True
        now = time.monotonic()
        if not force and now - host.last_attempt < HOST_RETRY_S:
            return False
        host.last_attempt = now
        try:
            if host.client is None:
                # every concurrent call, the event stream and a ping keep a pooled connection
                host.client = await self._run(make_client, host.config, self._max_concurrency + 2)
            else:
                await self._run(ping, host.client)
            if not host.network_ready:
                await self._run(ensure_network, host.client, self.network_name, self._labels)
                host.network_ready = True
        except SDK_ERRORS as exc:  # any failure to connect means: down, retry later
            mark_down(host, exc)
            return False
        host.ok = True
        host.error = ""
        self._start_watcher(host)
        return True

    async def _require(self, name: str) -> Host:
        """The host, connected, or :class:`HostUnavailable`. A down host is retried at most
        every ``HOST_RETRY_S``, so calls aimed at a dead endpoint fail fast in between."""
        host = self._host(name)
        if not await self._connected(host):
            raise HostUnavailable(name, host.error)
        return host

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, on_event: EventCallback) -> None:
        """Connect every host in parallel, ensure the network, start the event watchers.

        A host that fails is marked down and retried later; this never raises for it, so
        one dead endpoint does not keep the daemon from starting.
        """
        self._loop = asyncio.get_running_loop()
        self._on_event = on_event
        self._closed = False
        await asyncio.gather(*(self._connected(h, force=True) for h in self._hosts.values()))
        # Wait (briefly) until each watcher has its stream open, so an event right after
        # start() is not missed; `since` covers the rest.
        await asyncio.gather(
            *(
                asyncio.to_thread(h.watching.wait, 5.0)
                for h in self._hosts.values()
                if h.watcher is not None
            )
        )

    async def aclose(self) -> None:
        """Stop the watchers and close the clients. Containers keep running (adoption)."""
        self._closed = True
        for host in self._hosts.values():
            host.stop.set()
            stream = host.stream
            if stream is not None:
                # Best effort, racing the reader thread: the SDK's close reads the response
                # the reader may be tearing down (an AttributeError on its ``_fp`` then).
                with contextlib.suppress(Exception):
                    stream.close()
        for host in self._hosts.values():
            if host.watcher is not None:
                await asyncio.to_thread(host.watcher.join, 5.0)
                host.watcher = None
            close(host)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # --- event watchers ---------------------------------------------------------------------

    def _start_watcher(self, host: Host) -> None:
        if self._on_event is None or self._loop is None or self._closed:
            return
        if host.watcher is not None and host.watcher.is_alive():
            return
        host.stop = threading.Event()
        host.watching = threading.Event()
        host.watcher = threading.Thread(
            target=watch,
            args=(host, host.client, host.stop, self._loop, self._on_event, self._label_filter),
            name=f"docker-events-{host.name}",
            daemon=True,
        )
        host.watcher.start()

    def hosts(self) -> Sequence[HostStatus]:
        """In-memory view of every host (no I/O); see :func:`docker_hosts.status`."""
        return [status(h) for h in self._hosts.values()]
