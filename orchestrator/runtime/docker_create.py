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
* **The credential never appears in ``docker inspect``** with file delivery: it is copied
  into the created, not yet started, container with ``put_archive`` (into an anonymous
  volume at :data:`CREDENTIAL_DIR` when the root filesystem is read-only). Env delivery
  puts it in the environment, for images that cannot read a file.
* Named volumes a spec mounts are created with this instance's labels when missing, so
  drain can find them.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from typing import Any, cast

import docker.errors
import docker.types

from orchestrator.runtime import (
    CREDENTIAL_DIR,
    CREDENTIAL_FILE,
    ContainerSpec,
    ContainerStartError,
    labels_for,
)
from orchestrator.runtime.docker_hosts import LABEL_HOST

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
    env = dict(spec.env)
    env["RUNNER_CREDENTIAL_ENV"] = spec.credential_env
    if spec.credential_delivery == "env":
        env[spec.credential_env] = spec.credential
    else:
        env["RUNNER_CREDENTIAL_FILE"] = CREDENTIAL_FILE
    return env


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


def create_sync(
    client: Any, spec: ContainerSpec, host: str, *, instance_id: str, network_name: str
) -> dict[str, Any]:
    """Create, deliver the credential, return the inspect data (blocking). A container
    whose credential could not be delivered is removed again, never left half made."""
    labels = labels_for(instance_id)
    for source in (v.split(":", 1)[0] for v in spec.volumes):
        if is_named_volume(source):
            try:
                client.volumes.get(source)
            except docker.errors.NotFound:
                client.volumes.create(name=source, labels=labels)
    container = client.containers.create(
        **create_kwargs(spec, host, instance_id=instance_id, network_name=network_name)
    )
    if spec.credential_delivery == "file":
        try:
            target, archive = (
                (CREDENTIAL_DIR, credential_tar(spec.credential, in_dir=True))
                if spec.read_only
                else ("/", credential_tar(spec.credential))
            )
            if not container.put_archive(target, archive):
                raise ContainerStartError("engine refused the credential archive")
        except BaseException:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
            raise
    return cast(dict[str, Any], container.attrs)
