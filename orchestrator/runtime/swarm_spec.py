"""Pure half of the Swarm runtime: runner spec -> service spec, engine data -> our views.

No I/O here, so every rule (what a runner's service looks like, how a task state reads
as a runner state, whether any node could take a pool) is table-testable without an
engine. :mod:`orchestrator.runtime.swarm` does the talking.

Choices, and why:

* **One replicated service with one replica and restart condition ``none`` per runner.**
  Engine 20.10+ (API 1.41) and docker SDK >= 5 offer ``replicated-job`` services
  (``ServiceMode("replicated-job")``), which look made for this, but on the engines this
  was built against (20.10) removing a job service leaves its task in the store and its
  exited container on the node (moby/moby#42789, #44312), a leak the daemon could never
  clean up. A replicated service whose restart policy is ``none`` also runs its task once
  and never restarts it, and removing it removes task and container.
* **``Args``, not ``Command``.** In a service spec ``Command`` replaces the image's
  entrypoint; the runner contract needs the entrypoint (it reads the credential file),
  so the runner command goes to ``Args`` like ``docker run IMAGE ARGS``.
* **The credential is a Swarm secret** mounted read-only at :data:`CREDENTIAL_FILE` (mode
  0444, so a non-root runner can read it). Service and container inspect show the secret's
  id and the file path, never the value. The entrypoint's best-effort delete fails on the
  read-only mount, which the contract allows.
* **Placement is the engine's job.** The platform becomes ``node.platform.arch``
  constraints, GPUs a reservation of the nodes' generic resources of kind
  :data:`GPU_RESOURCE`, and the pool's own constraints are appended; memory and CPU limits
  are also reservations, so the scheduler never overcommits a node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.runtime import (
    CREDENTIAL_FILE,
    LABEL_PREFIX,
    ContainerInfo,
    ContainerSpec,
    GpuRequest,
    NoCapacity,
    NodeStatus,
    container_info,
    labels_for,
    parse_time,
)

#: Generic resource kind a GPU node advertises (``dockerd --node-generic-resource
#: NVIDIA-GPU=<uuid>`` or ``"node-generic-resources"`` in daemon.json).
GPU_RESOURCE = "NVIDIA-GPU"
#: Which configured endpoint created a service (same meaning as for containers).
LABEL_HOST = f"{LABEL_PREFIX}.host"
#: Node architectures as the engine reports them (``uname -m``), per platform.
NODE_ARCHES: Mapping[str, tuple[str, ...]] = {
    "linux/amd64": ("x86_64", "amd64"),
    "linux/arm64": ("aarch64", "arm64"),
}
#: The engine's spelling -> ours, for /status.
ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
#: Task states after which the task never runs again.
TERMINAL_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
#: The grace period between SIGTERM and SIGKILL when a runner's service is scaled to zero
#: (the reconciler always asks for 10 s; a service spec fixes it at create time).
STOP_GRACE_S = 10
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
DOCKER_SOCKET = "/var/run/docker.sock"
_NS = 1_000_000_000


def parse_bytes(value: str) -> int:
    """``512m`` / ``4g`` / ``1.5g`` / ``1024`` -> bytes (docker notation, binary units)."""
    text = value.strip().lower()
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


# --- nodes and placement -----------------------------------------------------------------------


def node_gpus(attrs: Mapping[str, Any]) -> int:
    """How many :data:`GPU_RESOURCE` the node advertises (discrete count or named ids)."""
    resources = (attrs.get("Description") or {}).get("Resources") or {}
    count = 0
    for item in resources.get("GenericResources") or []:
        discrete = item.get("DiscreteResourceSpec")
        named = item.get("NamedResourceSpec")
        if discrete and discrete.get("Kind") == GPU_RESOURCE:
            with contextlib.suppress(TypeError, ValueError):
                count += int(discrete.get("Value", 0))
        elif named and named.get("Kind") == GPU_RESOURCE:
            count += 1
    return count


def node_status(attrs: Mapping[str, Any]) -> NodeStatus:
    """One ``GET /nodes`` entry as /status shows it."""
    description = attrs.get("Description") or {}
    arch = str((description.get("Platform") or {}).get("Architecture") or "")
    spec = attrs.get("Spec") or {}
    return NodeStatus(
        id=str(attrs.get("ID", "")),
        hostname=str(description.get("Hostname") or ""),
        arch=ARCH_NAMES.get(arch, arch),
        gpus=node_gpus(attrs),
        availability=str(spec.get("Availability") or "unknown"),
        state=str((attrs.get("Status") or {}).get("State") or "unknown"),
        role=str(spec.get("Role") or ""),
    )


def nodes_reason(nodes: Sequence[NodeStatus], platform: str, gpus: GpuRequest) -> str:
    """'' when some ready, active node has the platform's arch and enough GPUs; else why
    not, naming the first filter that emptied the list (as the container placement does).

    Only arch and GPUs are checked here, from the last node listing; the pool's own
    constraints and free memory are the engine's call, reported from the task's state.
    """
    if platform not in NODE_ARCHES:
        raise NoCapacity(f"unsupported platform {platform!r} (want linux/amd64 or linux/arm64)")
    arch = ARCH_NAMES[NODE_ARCHES[platform][0]]
    usable = [n for n in nodes if n.state == "ready" and n.availability == "active"]
    if not usable:
        return f"no ready and active swarm node (of {len(nodes)})"
    fitting = [n for n in usable if n.arch == arch]
    if not fitting:
        return f"no ready swarm node of arch {arch} for {platform}"
    need = 0 if gpus is None else (1 if gpus == "all" else int(gpus))
    if need and not any(n.gpus >= need for n in fitting):
        return f"no ready {arch} swarm node advertising {need} or more {GPU_RESOURCE}"
    return ""


# --- service spec ------------------------------------------------------------------------------


def runner_labels(instance_id: str, spec: ContainerSpec, host: str) -> dict[str, str]:
    """The labels on a runner's service, its task containers and its secret."""
    labels = labels_for(
        instance_id,
        pool=spec.pool,
        forge=spec.forge,
        forge_runner_id=spec.forge_runner_id,
        runner_id=spec.runner_id,
    )
    labels[LABEL_HOST] = host
    return labels


def environment(spec: ContainerSpec) -> list[str]:
    """Same variables as the container runtime sets for file or env delivery: the
    contract does not change. Stdin delivery is file delivery here (no attach before a
    task starts), so the entrypoint is told to read the secret's file."""
    env = dict(spec.env)
    env["RUNNER_CREDENTIAL_ENV"] = spec.credential_env
    if spec.credential_delivery == "env":
        env[spec.credential_env] = spec.credential
    else:
        env["RUNNER_CREDENTIAL_FILE"] = CREDENTIAL_FILE
    return [f"{key}={value}" for key, value in env.items()]


def mounts(spec: ContainerSpec, volume_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """``src:dst[:ro]`` -> service mounts; named volumes get our labels when created."""
    out: list[dict[str, Any]] = []
    entries = list(spec.volumes)
    if spec.docker_socket:
        entries.append(f"{DOCKER_SOCKET}:{DOCKER_SOCKET}")
    for entry in entries:
        parts = entry.split(":")
        source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
        read_only = len(parts) > 2 and parts[2] == "ro"
        mount: dict[str, Any] = {"Target": target, "Source": source, "ReadOnly": read_only}
        if source.startswith(("/", ".", "~")):
            mount["Type"] = "bind"
        else:
            mount["Type"] = "volume"
            mount["VolumeOptions"] = {"Labels": dict(volume_labels)}
        out.append(mount)
    return out


def constraints(spec: ContainerSpec, extra: Iterable[str]) -> list[str]:
    arches = NODE_ARCHES.get(spec.platform)
    if arches is None:
        raise NoCapacity(f"unsupported platform {spec.platform!r}")
    return ["node.platform.os==linux", f"node.platform.arch=={arches[0]}", *extra]


def service_spec(
    spec: ContainerSpec,
    *,
    instance_id: str,
    host: str,
    network: str,
    secret: tuple[str, str] | None,
    extra_constraints: Iterable[str] = (),
    no_new_privileges: bool = False,
) -> dict[str, Any]:
    """The ``POST /services/create`` body for one runner.

    ``secret`` is ``(id, name)`` of the credential secret (file delivery). The engine API
    must be 1.41+ (capabilities and pids limit in service specs); ``no_new_privileges``
    only when it is 1.44+, the first version whose service spec can say so.
    """
    if spec.privileged:
        raise NoCapacity("Swarm services cannot run privileged containers")
    if spec.gpus == "all":
        raise NoCapacity("Swarm cannot reserve 'all' GPUs; the pool must give a count")
    labels = runner_labels(instance_id, spec, host)
    container: dict[str, Any] = {
        "Image": spec.image,
        "Args": list(spec.command),
        "Env": environment(spec),
        "Labels": dict(labels),
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "StopGracePeriod": STOP_GRACE_S * _NS,
    }
    if spec.cap_add:
        container["CapabilityAdd"] = list(spec.cap_add)
    if spec.user:
        container["User"] = spec.user
    if no_new_privileges:
        container["Privileges"] = {"NoNewPrivileges": True}
    if secret is not None:
        container["Secrets"] = [
            {
                "File": {"Name": CREDENTIAL_FILE, "UID": "0", "GID": "0", "Mode": 0o444},
                "SecretID": secret[0],
                "SecretName": secret[1],
            }
        ]
    volumes = mounts(spec, labels_for(instance_id))
    if volumes:
        container["Mounts"] = volumes
    limits: dict[str, Any] = {"Pids": spec.pids_limit}
    reservations: dict[str, Any] = {}
    if spec.memory:
        limits["MemoryBytes"] = reservations["MemoryBytes"] = parse_bytes(spec.memory)
    if spec.cpus:
        limits["NanoCPUs"] = reservations["NanoCPUs"] = int(spec.cpus * _NS)
    if spec.gpus is not None:
        reservations["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": GPU_RESOURCE, "Value": int(spec.gpus)}}
        ]
    resources: dict[str, Any] = {"Limits": limits}
    if reservations:
        resources["Reservations"] = reservations
    task = {
        "ContainerSpec": container,
        "Resources": resources,
        "RestartPolicy": {"Condition": "none", "Delay": 0, "MaxAttempts": 0, "Window": 0},
        "Placement": {"Constraints": constraints(spec, extra_constraints)},
        "Networks": [{"Target": network}],
        "LogDriver": {"Name": "json-file", "Options": dict(LOG_OPTS)},
    }
    return {
        "Name": spec.name,
        "Labels": labels,
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 1}},
    }


# --- engine data -> runner views -----------------------------------------------------------------


def latest_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The task that speaks for the service: the newest one (there is only ever one,
    as the restart policy is ``none``; defensive against a retried scheduling)."""
    newest: Mapping[str, Any] | None = None
    for task in tasks:
        if newest is None or (task.get("Version") or {}).get("Index", 0) > (
            newest.get("Version") or {}
        ).get("Index", 0):
            newest = task
    return newest


def service_info(
    host: str, service: Mapping[str, Any], task: Mapping[str, Any] | None
) -> ContainerInfo:
    """A runner's service (and its task) as the reconciler's :class:`ContainerInfo`.

    ``status`` is the task state as the engine says it (``pending`` ... ``running``,
    ``complete``, ``failed``, ``rejected``, ``shutdown``); a service with no task yet is
    ``pending``, and one scaled to zero by ``stop`` is ``shutdown``. ``exit_code`` comes
    with a terminal state when a container ran; ``error`` is the engine's ``Err``.
    """
    spec = service.get("Spec") or {}
    labels = spec.get("Labels") or {}
    replicas = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1)
    status = "pending"
    exit_code: int | None = None
    error = ""
    started_at = finished_at = None
    if task is not None:
        task_status = task.get("Status") or {}
        status = str(task_status.get("State") or "pending")
        error = str(task_status.get("Err") or "")
        at = parse_time(task_status.get("Timestamp"))
        container = task_status.get("ContainerStatus") or {}
        if status in TERMINAL_STATES:
            finished_at = at
            if container.get("ContainerID") and container.get("ExitCode") is not None:
                exit_code = int(container["ExitCode"])
        elif status == "running":
            started_at = at
    elif replicas == 0:
        status = "shutdown"
    return container_info(
        labels,
        container_id=str(service.get("ID", "")),
        name=str(spec.get("Name", "")),
        host=host,
        status=status,
        exit_code=exit_code,
        started_at=started_at,
        finished_at=finished_at,
        error=error,
    )
