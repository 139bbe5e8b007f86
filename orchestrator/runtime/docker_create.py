"""The container create path: :class:`ContainerSpec` -> ``docker create`` and credential.

Split from :mod:`orchestrator.runtime.docker_engine` because this is the one place a
runtime spec becomes what the engine is asked for, so the hardening and the credential
delivery can be read (and table-tested, :func:`create_kwargs` does no I/O) together:

* **Hardened by default.** ``cap_drop=ALL`` (+ the spec's ``cap_add``),
  ``no-new-privileges``, a pids limit, a memory limit, ``init`` so SIGTERM reaches the
  runner, bounded json-file logs, no restart policy, no auto-remove (the daemon reads the
  exit code and logs first), and a per-instance bridge network with inter-container
  traffic disabled (:mod:`orchestrator.runtime.docker_network`). Privileged mode and the
  host's Docker socket only when the spec asks; the config layer already checked the
  operator's ceiling.
* **The credential never appears in ``docker inspect``** with stdin delivery (the
  default) or file delivery. Stdin: the container is created with stdin open and
  ``StdinOnce``, its stdin is attached (a hijacked connection, :class:`StdinDelivery`)
  before start, and right after start the credential and a newline are written and the
  connection closed, so the entrypoint reads one line and then sees end of file; the
  engine does no work for it beyond the attach (file delivery's ``put_archive`` mounts
  the container's filesystem and unpacks a tar: ~250 ms a runner in a burst,
  docs/benchmarks.md). File: copied into the created, not yet started, container with
  ``put_archive`` (into an anonymous volume at :data:`CREDENTIAL_DIR` when the root
  filesystem is read-only). Env delivery puts it in the environment, for images that can
  read neither.
* Named volumes a spec mounts are created with this instance's labels when missing, so
  drain can find them.
"""

from __future__ import annotations

import contextlib
import io
import socket
import tarfile
import threading
import time
from typing import Any

import docker.errors
import docker.types

from orchestrator.runtime import (
    CREDENTIAL_DIR,
    CREDENTIAL_FILE,
    ContainerSpec,
    ContainerStartError,
    labels_for,
)
from orchestrator.runtime.docker_hosts import LABEL_HOST, SDK_ERRORS

#: json-file log rotation per container: enough for a job's tail, bounded on disk.
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
DOCKER_SOCKET = "/var/run/docker.sock"


def credential_tar(credential: str, *, in_dir: bool = False) -> bytes:
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


def is_named_volume(source: str) -> bool:
    """``cache:/cache`` names a volume; ``/srv/x:/x`` and ``./x:/x`` are bind mounts."""
    return bool(source) and not source.startswith(("/", ".", "~"))


def environment(spec: ContainerSpec) -> dict[str, str]:
    """The pool's env plus where the entrypoint finds the credential (the contract)."""
    env = dict(spec.env)
    env["RUNNER_CREDENTIAL_ENV"] = spec.credential_env
    if spec.credential_delivery == "env":
        env[spec.credential_env] = spec.credential
    elif spec.credential_delivery == "stdin":
        env["RUNNER_CREDENTIAL_STDIN"] = "1"
    else:
        env["RUNNER_CREDENTIAL_FILE"] = CREDENTIAL_FILE
    return env


class StdinDelivery:
    """The credential on its way to a created container's stdin (stdin delivery).

    :meth:`attach` opens the engine's attach connection (stdin only) before the container
    starts; :meth:`send` writes the credential and a newline once it runs; :meth:`close`
    ends the connection, which with ``StdinOnce`` makes the engine close the container's
    stdin: the entrypoint's read ends there whether the credential came or not (a daemon
    that dies before writing closes the connection with its process). ``close`` is
    idempotent and safe from any thread: whoever holds a delivery closes it on every path
    (start, a failed start, remove, the runtime's ``aclose``).
    """

    def __init__(self, container_id: str, sock: Any, credential: str) -> None:
        self.container_id = container_id
        self._sock = sock
        self._data = credential.encode() + b"\n"
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def attach(cls, client: Any, container_id: str, credential: str) -> StdinDelivery:
        """Attach to the container's stdin (blocking). Raises the SDK's errors."""
        sock = client.api.attach_socket(container_id, params={"stdin": 1, "stream": 1})
        return cls(container_id, sock, credential)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self) -> None:
        """Write the credential and close (blocking; bounded by the client's timeout).
        Raises :class:`ContainerStartError` when the connection is gone or closed."""
        with self._lock:
            if self._closed:
                raise ContainerStartError("the container's stdin was closed before the credential")
            try:
                _sendall(self._sock, self._data)
            except OSError as exc:
                raise ContainerStartError(
                    f"could not write the credential to the container's stdin: {exc}"
                ) from exc
            finally:
                self._data = b""
        self.close()

    def close(self) -> None:
        """End the attach connection (both directions), once; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._data = b""
            sock, self._sock = self._sock, None
        _close(sock)


def _raw_socket(sock: Any) -> Any:
    """The socket under what ``attach_socket`` returns: a ``SocketIO`` over plain sockets
    (unix, tcp; ``ssh://`` hosts are a unix socket too, the runtime's ssh relay), or the
    TLS socket itself."""
    return getattr(sock, "_sock", sock) if isinstance(sock, socket.SocketIO) else sock


def _sendall(sock: Any, data: bytes) -> None:
    raw = _raw_socket(sock)
    if hasattr(raw, "sendall"):
        raw.sendall(data)
    else:  # pragma: no cover - a transport without sendall (named pipes)
        raw.write(data)


def _close(sock: Any) -> None:
    """Shut the connection down, then close every layer: closing only the ``SocketIO``
    leaves the file descriptor open while the HTTP response still refers to it."""
    raw = _raw_socket(sock)
    with contextlib.suppress(OSError):  # already shut, or the engine hung up (TLS: SSLError)
        raw.shutdown(socket.SHUT_RDWR)
    for layer in (sock, raw):
        with contextlib.suppress(OSError):
            layer.close()


def create_kwargs(
    spec: ContainerSpec, host: str, *, instance_id: str, network_name: str
) -> dict[str, Any]:
    """Everything ``containers.create`` gets, the hardening included (see module doc).
    ``network_name`` is the instance network, used unless the spec names another."""
    labels = labels_for(
        instance_id,
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
        "environment": environment(spec),
        "platform": spec.platform,
        # stdin delivery: stdin open, and StdinOnce (the engine closes the container's
        # stdin when the attached client disconnects). The SDK sets StdinOnce only for a
        # non-detached create with stdin open; "detach" means nothing else to create (it
        # also marks stdout/stderr as attached, which only `docker start -a` reads).
        "detach": spec.credential_delivery != "stdin",
        "stdin_open": spec.credential_delivery == "stdin",
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
    network = spec.network or network_name
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


#: ``create_kwargs`` keys that go to the container config (``create_container``); every
#: other key but ``volumes`` and ``network`` is a host-config key (``create_host_config``).
CONTAINER_KEYS = frozenset(
    {
        "image",
        "command",
        "name",
        "labels",
        "environment",
        "platform",
        "detach",
        "stdin_open",
        "user",
    }
)
HOST_CONFIG_KEYS = frozenset(
    {
        "cap_drop",
        "cap_add",
        "security_opt",
        "pids_limit",
        "privileged",
        "init",
        "auto_remove",
        "restart_policy",
        "log_config",
        "mem_limit",
        "nano_cpus",
        "read_only",
        "tmpfs",
        "network_mode",
        "device_requests",
    }
)


def volume_target(volume: str) -> str:
    """Where ``src:dst[:mode]`` (or an anonymous ``dst``) mounts in the container."""
    parts = volume.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def split_create(
    kwargs: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """:func:`create_kwargs` -> (``create_container`` arguments, ``create_host_config``
    arguments, the network to join), as the SDK's ``containers.create`` splits them.

    The daemon calls the low-level API so a create is one engine call: the high-level
    ``containers.create`` inspects the new container afterwards, though the daemon set
    every field of that answer it needs itself (the id aside). A key this does not know is a bug
    here (a new option added to one side only) and raises :class:`KeyError`.
    """
    config: dict[str, Any] = {}
    host: dict[str, Any] = {}
    network: str | None = None
    for key, value in kwargs.items():
        if key in CONTAINER_KEYS:
            config[key] = value
        elif key in HOST_CONFIG_KEYS:
            host[key] = value
        elif key == "volumes":
            if value:
                host["binds"] = list(value)
                config["volumes"] = [volume_target(v) for v in value]
        elif key == "network":
            network = value
            host["network_mode"] = value
        else:
            raise KeyError(f"create option {key!r} is neither a container nor a host option")
    return config, host, network


def create_sync(
    client: Any, spec: ContainerSpec, host: str, *, instance_id: str, network_name: str
) -> tuple[str, dict[str, str], StdinDelivery | None]:
    """Create, deliver the credential (file) or attach to stdin (stdin), return the new
    container's id, its labels and the open stdin delivery (blocking): two engine calls
    for stdin delivery, create and attach, no inspect. A container whose credential could
    not be delivered or attached is removed again, never left half made."""
    labels = labels_for(instance_id)
    for source in (v.split(":", 1)[0] for v in spec.volumes):
        if is_named_volume(source):
            try:
                client.volumes.get(source)
            except docker.errors.NotFound:
                client.volumes.create(name=source, labels=labels)
    kwargs = create_kwargs(spec, host, instance_id=instance_id, network_name=network_name)
    config, host_config, network = split_create(kwargs)
    api = client.api
    networking = (
        api.create_networking_config({network: api.create_endpoint_config()}) if network else None
    )
    answer = api.create_container(
        **config, host_config=api.create_host_config(**host_config), networking_config=networking
    )
    container_id = str(answer["Id"])
    delivery: StdinDelivery | None = None
    try:
        if spec.credential_delivery == "stdin":
            delivery = StdinDelivery.attach(client, container_id, spec.credential)
        elif spec.credential_delivery == "file":
            target, archive = (
                (CREDENTIAL_DIR, credential_tar(spec.credential, in_dir=True))
                if spec.read_only
                else ("/", credential_tar(spec.credential))
            )
            if not api.put_archive(container_id, target, archive):
                raise ContainerStartError("engine refused the credential archive")
    except BaseException:
        if delivery is not None:
            delivery.close()
        with contextlib.suppress(*SDK_ERRORS):  # the first error is the one to report
            api.remove_container(container_id, force=True, v=True)
        raise
    return container_id, dict(kwargs["labels"]), delivery


def start_sync(client: Any, container_id: str, delivery: StdinDelivery | None) -> None:
    """Start a created container and write its credential to stdin (stdin delivery),
    blocking. No inspect afterwards: what the container does next (runs on, exits at
    once) is the event stream's and the listing's to report. The delivery is closed on
    every path: when start fails the container never ran; when the write fails it runs
    with stdin at end of file, its entrypoint exits non-zero, and
    :class:`ContainerStartError` says why."""
    try:
        client.api.start(container_id)
        if delivery is not None:
            delivery.send()
    finally:
        if delivery is not None:
            delivery.close()
