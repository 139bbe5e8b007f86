"""The Docker Engine runtime: runner containers on one or more Docker endpoints.

This is the only module that imports the docker SDK. Everything the SDK raises is
translated here, at the edge, into :class:`HostUnavailable`, :class:`NoCapacity` or
:class:`ContainerStartError`, so the reconciler never sees a ``docker.errors`` type.

How it works, and why:

* **One ``DockerClient`` per host for the daemon's life.** The SDK is blocking
  (``requests``), so every call runs in a worker thread under one semaphore that bounds
  how many threads hammer the engines at once (STYLE.md §5 item 11). It admits as many
  calls as the reconciler spawns runners at once (8), on the runtime's own thread pool of
  that size: on asyncio's shared default pool (``cpu_count + 4`` threads, 6 on two
  cores, also used by the forge providers) and a semaphore of 4, a burst's Docker calls
  queued behind each other and behind forge calls (docs/benchmarks.md). Each client's
  connection pool holds that many calls plus the event stream and a ping, so no call
  opens and drops a connection of its own.
* **Labels are the only ownership record.** Every container, network and volume created
  here carries :func:`labels_for`; listing and clean-up filter on
  ``io.runner-orchestrator.managed=true`` *and* this daemon's instance id, and ``stop`` /
  ``remove`` refuse a container that carries another instance's id.
* **Hardened by default.** ``cap_drop=ALL`` (+ the spec's ``cap_add``),
  ``no-new-privileges``, a pids limit, a memory limit, ``init`` so SIGTERM reaches the
  runner, bounded json-file logs, no restart policy, no auto-remove (the daemon reads the
  exit code and logs first), and a per-instance bridge network with inter-container
  traffic disabled. Privileged mode and the host's Docker socket only when the spec asks;
  the config layer already checked the operator's ceiling.
* **The credential never appears in ``docker inspect``** with file delivery: it is copied
  into the created, not yet started, container with ``put_archive``.
* **Hosts fail independently.** A host that does not answer is marked down
  (:meth:`DockerRuntime.hosts`), left out of placement and retried on later calls, while the
  others keep working. ``list()`` reports it in ``Listing.unreachable`` so the reconciler
  does not mistake "unknown" for "gone".
* **Events** come from one thread per host reading the engine's event stream, handed to
  the loop with ``call_soon_threadsafe``; a broken stream is reopened with backoff from the
  last event's time, so a short outage loses nothing (a replayed event may repeat, which a
  level-triggered reconciler shrugs off).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import dataclasses
import functools
import io
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

import docker
import docker.errors
import docker.tls
import docker.types
import requests.exceptions

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    CREDENTIAL_DIR,
    CREDENTIAL_FILE,
    LABEL_FORGE,
    LABEL_FORGE_RUNNER_ID,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_PREFIX,
    LABEL_RUNNER_ID,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStartError,
    EventCallback,
    GpuRequest,
    HostStatus,
    HostUnavailable,
    Listing,
    NoCapacity,
    RuntimeFailure,
    labels_for,
)
from orchestrator.runtime.placement import choose_host

T = TypeVar("T")

#: Which configured host name created a container. Informational for operators, and lets
#: ``list()`` attribute a container correctly when one engine is configured under two names.
LABEL_HOST = f"{LABEL_PREFIX}.host"

#: Engine event actions forwarded to the daemon (everything else is noise for it).
EVENT_ACTIONS = ("start", "die", "oom", "destroy")
#: Seconds between reconnect attempts to a host that was down (per call that needs it).
HOST_RETRY_S = 2.0
#: Event stream reconnect backoff: first wait, cap.
EVENTS_BACKOFF_S = (0.5, 30.0)
#: Per-request HTTP timeout towards an engine. ``stop`` adds its own grace period.
API_TIMEOUT_S = 60
#: Timeout of a connection attempt (version probe, ping): a blackholed tcp endpoint must not
#: hold a worker thread for API_TIMEOUT_S on every retry.
CONNECT_TIMEOUT_S = 10
#: json-file log rotation per container: enough for a job's tail, bounded on disk.
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
DOCKER_SOCKET = "/var/run/docker.sock"
#: SDK calls in flight at once, all hosts together: the reconciler's spawn concurrency.
DEFAULT_MAX_CONCURRENCY = 8
#: Exceptions that mean "the endpoint did not answer", not "the engine said no".
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


#: What the docker SDK and its transport raise (requests' errors are OSErrors). Only these
#: are translated into runtime errors; anything else is a bug of ours and propagates.
_SDK_ERRORS: tuple[type[BaseException], ...] = (docker.errors.DockerException, OSError)


class NotOurs(RuntimeFailure):
    """A container id that exists but belongs to another daemon instance (or to nobody):
    this runtime never stops or removes it."""


def default_network_name(instance_id: str) -> str:
    """The per-instance bridge network runners join unless a spec names another."""
    return f"runner-orchestrator-{instance_id}"


def _parse_time(value: str | None) -> datetime | None:
    """Engine timestamps (RFC 3339 with nanoseconds; ``0001-01-01...`` = never) to UTC."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        # the offset, if any, follows the fraction; the engine always sends Z (UTC)
        digits = "".join(ch for ch in frac if ch.isdigit())[:6]
        text = f"{head}.{digits}"
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None


def _credential_tar(credential: str, *, in_dir: bool = False) -> bytes:
    """A tar with ``run/runner-orchestrator/`` (0777, so a non-root runner can delete the
    file after reading) and ``credential`` (0444) inside it, for ``put_archive("/")``.

    ``run/`` itself is left out: the engine creates a missing parent with 0755 and leaves
    an existing ``/run`` of the image untouched. ``in_dir``: just ``credential``, for
    ``put_archive(CREDENTIAL_DIR)`` into the volume a read-only container has there.
    """
    data = credential.encode()
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if not in_dir:
            directory = tarfile.TarInfo(CREDENTIAL_DIR.lstrip("/"))
            directory.type = tarfile.DIRTYPE
            directory.mode = 0o777
            directory.mtime = int(now)
            tar.addfile(directory)
        name = "credential" if in_dir else CREDENTIAL_FILE.lstrip("/")
        entry = tarfile.TarInfo(name)
        entry.size = len(data)
        entry.mode = 0o444
        entry.mtime = int(now)
        tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def _is_named_volume(source: str) -> bool:
    """``cache:/cache`` names a volume; ``/srv/x:/x`` and ``./x:/x`` are bind mounts."""
    return bool(source) and not source.startswith(("/", ".", "~"))


@dataclasses.dataclass
class _Host:
    """Mutable state of one endpoint. Mutated on the event loop thread only; the watcher
    thread touches just ``stop``/``stream``."""

    config: DockerHostConfig
    client: Any = None
    ok: bool = False
    error: str = "not connected yet"
    last_attempt: float = float("-inf")
    containers: set[str] = dataclasses.field(default_factory=set)
    network_ready: bool = False
    watcher: threading.Thread | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    stream: Any = None
    watching: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.config.name


class DockerRuntime:
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
        credential_delivery: Literal["file", "env"] = "file",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        if not hosts:
            raise ValueError("DockerRuntime needs at least one docker host")
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate docker host names {names}")
        self.instance_id = instance_id
        self.network_name = network_name or default_network_name(instance_id)
        self.credential_delivery = credential_delivery
        self._hosts = {h.name: _Host(h) for h in hosts}
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

    def _host(self, name: str) -> _Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise HostUnavailable(name, "not a configured docker host") from None

    def _make_client(self, config: DockerHostConfig) -> Any:
        """Build and ping a client (blocking; runs in a thread).

        TLS only when certificates are configured; ``ssh://`` shells out to the ``ssh``
        binary (``use_ssh_client``) so the operator's ssh config and agent apply and no
        paramiko is needed.
        """
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
        client = docker.DockerClient(
            base_url=config.url,
            tls=tls,
            timeout=CONNECT_TIMEOUT_S,
            use_ssh_client=config.url.startswith("ssh://"),
            # every concurrent call, the event stream and a ping keep a pooled connection
            max_pool_size=self._max_concurrency + 2,
        )
        try:
            _ping(client)
        except BaseException:
            client.close()
            raise
        # Per-request timeouts win over the one the transport was built with (checked:
        # a 8 s stop succeeds on a client built with 3 s), so raise it for real work.
        client.api.timeout = API_TIMEOUT_S
        return client

    def _mark_down(self, host: _Host, exc: BaseException) -> None:
        host.ok = False
        host.error = _describe(exc)

    async def _connected(self, host: _Host, *, force: bool = False) -> bool:
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
                host.client = await self._run(self._make_client, host.config)
            else:
                await self._run(_ping, host.client)
            if not host.network_ready:
                await self._run(self._ensure_network_sync, host.client)
                host.network_ready = True
        except _SDK_ERRORS as exc:  # any failure to connect means: down, retry later
            self._mark_down(host, exc)
            return False
        host.ok = True
        host.error = ""
        self._start_watcher(host)
        return True

    async def _require(self, name: str) -> _Host:
        """The host, connected, or :class:`HostUnavailable`. A down host is retried at most
        every ``HOST_RETRY_S``, so calls aimed at a dead endpoint fail fast in between."""
        host = self._host(name)
        if not await self._connected(host):
            raise HostUnavailable(name, host.error)
        return host

    def _ensure_network_sync(self, client: Any) -> None:
        """Create the instance bridge network with our labels if it is missing.

        ICC is off: runners of different jobs share the network but cannot reach each
        other, only the outside world. An existing network of that name is used as is (an
        operator may have made it); only one carrying our instance label is ever removed.
        """
        # the engine's name filter matches substrings: compare exactly
        if any(
            n.name == self.network_name for n in client.networks.list(names=[self.network_name])
        ):
            return
        try:
            client.networks.create(
                self.network_name,
                driver="bridge",
                labels=dict(self._labels),
                options={"com.docker.network.bridge.enable_icc": "false"},
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: created concurrently by another call, fine
                raise

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
                with contextlib.suppress(Exception):
                    stream.close()
        for host in self._hosts.values():
            if host.watcher is not None:
                await asyncio.to_thread(host.watcher.join, 5.0)
                host.watcher = None
            if host.client is not None:
                with contextlib.suppress(Exception):
                    host.client.close()
                host.client = None
            host.ok = False
            host.error = "closed"
            host.network_ready = False
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # --- events -----------------------------------------------------------------------------

    def _start_watcher(self, host: _Host) -> None:
        if self._on_event is None or self._loop is None or self._closed:
            return
        if host.watcher is not None and host.watcher.is_alive():
            return
        host.stop = threading.Event()
        host.watching = threading.Event()
        host.watcher = threading.Thread(
            target=self._watch,
            args=(host, host.client, host.stop, self._loop, self._on_event),
            name=f"docker-events-{host.name}",
            daemon=True,
        )
        host.watcher.start()

    def _watch(
        self,
        host: _Host,
        client: Any,
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
        on_event: EventCallback,
    ) -> None:
        """Thread body: read the host's event stream until ``stop``; reopen on errors."""
        since = int(time.time())
        backoff = EVENTS_BACKOFF_S[0]
        filters = {"type": "container", "label": self._label_filter, "event": list(EVENT_ACTIONS)}
        while not stop.is_set():
            try:
                stream = client.events(decode=True, filters=filters, since=since)
                host.stream = stream
                host.watching.set()
                if stop.is_set():
                    stream.close()
                    return
                for raw in stream:
                    backoff = EVENTS_BACKOFF_S[0]
                    since = max(since, int(raw.get("time", since)))
                    event = self._to_event(host.name, raw)
                    if event is not None:
                        try:
                            loop.call_soon_threadsafe(on_event, event)
                        except RuntimeError:  # loop closed under us: nothing to tell
                            return
            except Exception:  # noqa: BLE001 - a broken stream of any kind: reopen after backoff
                host.watching.set()
            if stop.wait(backoff):
                return
            backoff = min(backoff * 2, EVENTS_BACKOFF_S[1])

    @staticmethod
    def _to_event(host: str, raw: dict[str, Any]) -> ContainerEvent | None:
        action = str(raw.get("Action") or raw.get("status") or "")
        if action not in EVENT_ACTIONS:
            return None
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        exit_code: int | None = None
        if "exitCode" in attributes:
            with contextlib.suppress(TypeError, ValueError):
                exit_code = int(attributes["exitCode"])
        return ContainerEvent(
            host=host,
            container_id=str(actor.get("ID") or raw.get("id") or ""),
            action=action,
            runner_id=str(attributes.get(LABEL_RUNNER_ID, "")),
            exit_code=exit_code,
        )

    # --- placement --------------------------------------------------------------------------

    def hosts(self) -> Sequence[HostStatus]:
        """In-memory view of every host (no I/O).

        ``containers`` counts this instance's containers on the host, exited ones included
        until removed (they still hold disk and a name); it is refreshed by ``list()`` and
        kept current by ``create``/``remove`` in between. Containers of other instances or
        tools on the same engine are not counted: ``max_containers`` is this daemon's share.
        """
        return [
            HostStatus(
                name=h.name,
                url=h.config.url,
                ok=h.ok,
                arch=h.config.arch,
                gpus=h.config.gpus,
                max_containers=h.config.max_containers,
                containers=len(h.containers),
                error=h.error,
            )
            for h in self._hosts.values()
        ]

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        """'' when a live host could take such a container now, else the reason why not."""
        try:
            choose_host(self.hosts(), platform, gpus, hosts)
        except NoCapacity as exc:
            return str(exc)
        return ""

    async def _place(self, spec: ContainerSpec) -> _Host:
        """Choose a host, first giving hosts that were down a chance to come back."""
        await asyncio.gather(*(self._connected(h) for h in self._hosts.values() if not h.ok))
        name = choose_host(self.hosts(), spec.platform, spec.gpus, spec.hosts)
        return self._hosts[name]

    # --- containers -------------------------------------------------------------------------

    def _environment(self, spec: ContainerSpec) -> dict[str, str]:
        env = dict(spec.env)
        env["RUNNER_CREDENTIAL_ENV"] = spec.credential_env
        if spec.credential_delivery == "env":
            env[spec.credential_env] = spec.credential
        else:
            env["RUNNER_CREDENTIAL_FILE"] = CREDENTIAL_FILE
        return env

    def _create_kwargs(self, spec: ContainerSpec, host: str) -> dict[str, Any]:
        """Everything ``containers.create`` gets, the hardening included (see module doc)."""
        labels = labels_for(
            self.instance_id,
            pool=spec.pool,
            forge=spec.forge,
            forge_runner_id=spec.forge_runner_id,
            runner_id=spec.runner_id,
        )
        labels[LABEL_HOST] = host
        volumes = list(spec.volumes)
        if spec.docker_socket:
            volumes.append(f"{DOCKER_SOCKET}:{DOCKER_SOCKET}")
        if spec.read_only and spec.credential_delivery == "file":
            # a read-only rootfs takes no archive: the credential goes into an anonymous
            # volume there (removed with the container, remove(v=True))
            volumes.append(CREDENTIAL_DIR)
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "command": list(spec.command) or None,
            "name": spec.name,
            "labels": labels,
            "environment": self._environment(spec),
            "platform": spec.platform,
            "detach": True,
            "cap_drop": ["ALL"],
            "cap_add": list(spec.cap_add) or None,
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": spec.pids_limit,
            "privileged": spec.privileged,
            "init": True,
            "auto_remove": False,
            "restart_policy": {"Name": "no"},
            "log_config": docker.types.LogConfig(
                type=docker.types.LogConfig.types.JSON, config=dict(LOG_OPTS)
            ),
            "volumes": volumes or None,
        }
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1_000_000_000)
        if spec.user:
            kwargs["user"] = spec.user
        if spec.read_only:
            kwargs["read_only"] = True
            kwargs["tmpfs"] = {"/tmp": "rw,nosuid,nodev"}  # noqa: S108 - inside the container
        network = spec.network or self.network_name
        if network in {"host", "none"}:
            kwargs["network_mode"] = network
        else:
            kwargs["network"] = network
        if spec.gpus is not None:
            kwargs["device_requests"] = [
                docker.types.DeviceRequest(
                    driver="nvidia",
                    count=-1 if spec.gpus == "all" else int(spec.gpus),
                    capabilities=[list(spec.gpu_capabilities)],
                )
            ]
        return kwargs

    def _create_sync(self, client: Any, spec: ContainerSpec, host: str) -> dict[str, Any]:
        """Create, deliver the credential, return the inspect data (blocking)."""
        labels = labels_for(self.instance_id)
        for source in (v.split(":", 1)[0] for v in spec.volumes):
            if _is_named_volume(source):
                try:
                    client.volumes.get(source)
                except docker.errors.NotFound:
                    client.volumes.create(name=source, labels=labels)
        container = client.containers.create(**self._create_kwargs(spec, host))
        if spec.credential_delivery == "file":
            try:
                target, archive = (
                    (CREDENTIAL_DIR, _credential_tar(spec.credential, in_dir=True))
                    if spec.read_only
                    else ("/", _credential_tar(spec.credential))
                )
                if not container.put_archive(target, archive):
                    raise ContainerStartError("engine refused the credential archive")
            except BaseException:
                with contextlib.suppress(Exception):
                    container.remove(force=True, v=True)
                raise
        return cast(dict[str, Any], container.attrs)

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
                await self._run(self._ensure_network_sync, host.client)
                host.network_ready = True
            attrs = await self._run(self._create_sync, host.client, spec, host.name)
        except RuntimeFailure:
            raise
        except _SDK_ERRORS as exc:
            raise self._translate(host, exc, "create", spec.name) from exc
        info = self._info(host.name, attrs)
        host.containers.add(info.id)
        return info

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        """Start a created container and return its fresh state.

        A start the engine refuses (no GPU driver here, bad mount, exec format) raises
        :class:`ContainerStartError` carrying host and container id; the container stays,
        in ``created`` state, for the reconciler to read and remove.
        """
        host = await self._require(info.host)

        def _start() -> dict[str, Any]:
            host.client.api.start(info.id)
            return cast(dict[str, Any], host.client.api.inspect_container(info.id))

        try:
            attrs = await self._run(_start)
        except _SDK_ERRORS as exc:
            raise self._translate(host, exc, "start", info.name, info.id) from exc
        return self._info(host.name, attrs)

    def _check_ours(self, client: Any, container_id: str) -> bool:
        """True if ours; False if gone; :class:`NotOurs` if someone else's."""
        try:
            attrs = client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_INSTANCE) != self.instance_id:
            raise NotOurs(
                f"container {container_id[:12]} is not managed by instance {self.instance_id}"
            )
        return True

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, SIGKILL after ``timeout_s``. Gone already is success; another
        instance's container raises :class:`NotOurs`."""
        h = await self._require(host)

        def _stop() -> None:
            if not self._check_ours(h.client, container_id):
                return
            try:
                h.client.api.stop(container_id, timeout=max(0, round(timeout_s)))
            except docker.errors.NotFound:
                return

        try:
            await self._run(_stop)
        except RuntimeFailure:
            raise
        except _SDK_ERRORS as exc:
            raise self._translate(h, exc, "stop", container_id, container_id) from exc

    async def remove(self, host: str, container_id: str) -> None:
        """Force-remove with anonymous volumes. Gone already (or being removed) is success."""
        h = await self._require(host)

        def _remove() -> None:
            if not self._check_ours(h.client, container_id):
                return
            try:
                h.client.api.remove_container(container_id, v=True, force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "already in progress" in str(exc):
                    return
                raise

        try:
            await self._run(_remove)
        except RuntimeFailure:
            raise
        except _SDK_ERRORS as exc:
            raise self._translate(h, exc, "remove", container_id, container_id) from exc
        h.containers.discard(container_id)

    def _list_sync(self, client: Any) -> list[dict[str, Any]]:
        """Our containers on one engine, with full inspect data (exit code, times)."""
        summaries = client.api.containers(all=True, filters={"label": self._label_filter})
        result = []
        for summary in summaries:
            if "com.docker.swarm.service.id" in (summary.get("Labels") or {}):
                continue  # a Swarm task: the Swarm runtime's, listed as its service
            try:
                result.append(cast(dict[str, Any], client.api.inspect_container(summary["Id"])))
            except docker.errors.NotFound:  # removed between list and inspect
                continue
        return result

    async def list(self) -> Listing:
        """This instance's containers on every host that answers, plus the ones that did not.

        Hosts that were down are retried here, so a recovered host reappears on the next
        reconcile. A host's ``containers`` count is refreshed from what it reports.
        """

        async def one(host: _Host) -> list[tuple[ContainerInfo, str]] | None:
            if not await self._connected(host):
                return None
            try:
                attrs = await self._run(self._list_sync, host.client)
            except _SDK_ERRORS as exc:  # the host goes to Listing.unreachable
                self._mark_down(host, exc)
                return None
            return [
                (
                    self._info(host.name, a),
                    ((a.get("Config") or {}).get("Labels") or {}).get(LABEL_HOST, ""),
                )
                for a in attrs
            ]

        hosts = list(self._hosts.values())
        results = await asyncio.gather(*(one(h) for h in hosts))
        containers = self._dedupe([i for r in results if r is not None for i in r])
        for host in hosts:
            host.containers = {i.id for i in containers if i.host == host.name}
        unreachable = frozenset(h.name for h, r in zip(hosts, results, strict=True) if r is None)
        return Listing(containers=containers, unreachable=unreachable)

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        """The last ``tail`` lines (stdout and stderr interleaved) as text; '' if gone."""
        h = await self._require(host)

        def _logs() -> bytes:
            try:
                return cast(
                    bytes,
                    h.client.api.logs(container_id, stdout=True, stderr=True, tail=max(0, tail)),
                )
            except docker.errors.NotFound:
                return b""

        try:
            data = await self._run(_logs)
        except _SDK_ERRORS as exc:
            raise self._translate(h, exc, "logs", container_id, container_id) from exc
        return data.decode("utf-8", errors="replace")

    @staticmethod
    def _dedupe(found: builtins.list[tuple[ContainerInfo, str]]) -> tuple[ContainerInfo, ...]:
        """One entry per container id. The same id seen through two host names means one
        engine configured twice; the host its ``.host`` label names wins, else the first."""
        chosen: dict[str, ContainerInfo] = {}
        for info, created_on in found:
            if info.id not in chosen or info.host == created_on:
                chosen[info.id] = info
        return tuple(chosen.values())

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

        def _remove(client: Any) -> bool:
            removed = False
            for net in client.networks.list(
                filters={"label": self._label_filter}, names=[self.network_name]
            ):
                net.reload()
                if net.name != self.network_name or net.attrs.get("Containers"):
                    continue
                with contextlib.suppress(docker.errors.NotFound):
                    net.remove()
                    removed = True
            return removed

        done = []
        for host in self._hosts.values():
            if not await self._connected(host, force=True):
                continue
            try:
                if await self._run(_remove, host.client):
                    done.append(host.name)
                host.network_ready = False
            except _SDK_ERRORS as exc:  # best effort at drain; host marked down
                self._mark_down(host, exc)
        return done

    async def release_unused(self) -> None:
        """The protocol's shutdown clean-up: unused network and volumes of this instance."""
        await self.remove_network()
        await self.remove_volumes()

    async def remove_volumes(self) -> int:
        """Remove this instance's labelled volumes that no container uses (drain). Named
        volumes are caches meant to outlive runners, so this is an explicit call."""

        def _remove(client: Any) -> int:
            count = 0
            for volume in client.volumes.list(filters={"label": self._label_filter}):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    volume.remove()
                    count += 1
            return count

        total = 0
        for host in self._hosts.values():
            if not await self._connected(host, force=True):
                continue
            try:
                total += await self._run(_remove, host.client)
            except _SDK_ERRORS as exc:  # best effort at drain; host marked down
                self._mark_down(host, exc)
        return total

    # --- translation ------------------------------------------------------------------------

    @staticmethod
    def _info(host: str, attrs: dict[str, Any]) -> ContainerInfo:
        config = attrs.get("Config") or {}
        labels = config.get("Labels") or {}
        state = attrs.get("State") or {}
        status = str(state.get("Status") or "created")
        exit_code: int | None = None
        if status in {"exited", "dead"} and state.get("ExitCode") is not None:
            exit_code = int(state["ExitCode"])
        return ContainerInfo(
            id=str(attrs.get("Id", "")),
            name=str(attrs.get("Name", "")).lstrip("/"),
            host=host,
            status=status,
            runner_id=labels.get(LABEL_RUNNER_ID, ""),
            pool=labels.get(LABEL_POOL, ""),
            forge=labels.get(LABEL_FORGE, ""),
            forge_runner_id=labels.get(LABEL_FORGE_RUNNER_ID, ""),
            exit_code=exit_code,
            started_at=_parse_time(state.get("StartedAt")),
            finished_at=_parse_time(state.get("FinishedAt")),
        )

    def _translate(
        self, host: _Host, exc: BaseException, op: str, what: str, container_id: str = ""
    ) -> RuntimeFailure:
        """SDK error (one of :data:`_SDK_ERRORS`; callers catch only those) -> runtime error.
        Connection trouble also marks the host down; the engine refusing a create or start
        is a :class:`ContainerStartError`; anything else (a stop or remove the engine
        refused) a plain :class:`RuntimeFailure`."""
        if isinstance(exc, _CONNECTION_ERRORS) or (
            isinstance(exc, docker.errors.DockerException)
            and not isinstance(exc, docker.errors.APIError)
            and "connection" in str(exc).lower()
        ):
            self._mark_down(host, exc)
            return HostUnavailable(host.name, f"{op} {what}: {_describe(exc)}")
        if isinstance(exc, docker.errors.ImageNotFound):
            return ContainerStartError(
                f"{op} {what} on {host.name}: image not found locally ({_describe(exc)})",
                host=host.name,
                container_id=container_id,
            )
        message = f"{op} {what} on {host.name} failed: {_describe(exc)}"
        if op in {"create", "start"}:
            return ContainerStartError(message, host=host.name, container_id=container_id)
        return RuntimeFailure(message)


def _ping(client: Any) -> None:
    """``GET /_ping`` with the short connect timeout (the SDK's ``ping()`` uses the long
    per-request one)."""
    response = client.api.get(f"{client.api.base_url}/_ping", timeout=CONNECT_TIMEOUT_S)
    response.raise_for_status()


def _describe(exc: BaseException) -> str:
    """One line for logs and ``/status``: the engine's explanation when it gave one."""
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation
        if isinstance(explanation, bytes):
            explanation = explanation.decode("utf-8", errors="replace")
        return f"{exc.status_code}: {explanation or exc}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
