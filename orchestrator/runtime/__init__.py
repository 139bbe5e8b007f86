"""The seam between the daemon and where containers run (the *runtime*).

The daemon talks to a :class:`ContainerRuntime`; the Docker implementation lives in
:mod:`orchestrator.runtime.docker_engine` (its parts in the ``docker_*`` modules), the
Swarm one in :mod:`orchestrator.runtime.swarm`, and placement over several hosts in
:mod:`orchestrator.runtime.placement`.

Every object a runtime creates carries the labels in :func:`labels_for`: listing and
clean-up go by those labels only, and objects of another daemon instance are left alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

# Where the credential file lands inside a container (file delivery): part of the runner
# contract, defined in models so config checks (orchestrator.ceiling) can name it too.
from orchestrator.models import CREDENTIAL_DIR as CREDENTIAL_DIR
from orchestrator.models import CREDENTIAL_FILE as CREDENTIAL_FILE

LABEL_PREFIX = "io.runner-orchestrator"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
LABEL_POOL = f"{LABEL_PREFIX}.pool"
LABEL_FORGE = f"{LABEL_PREFIX}.forge"
LABEL_FORGE_RUNNER_ID = f"{LABEL_PREFIX}.forge-runner-id"
LABEL_RUNNER_ID = f"{LABEL_PREFIX}.runner-id"


def labels_for(
    instance_id: str,
    *,
    pool: str = "",
    forge: str = "",
    forge_runner_id: str = "",
    runner_id: str = "",
) -> dict[str, str]:
    """The label set for an object this daemon instance creates."""
    labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: instance_id}
    for key, value in (
        (LABEL_POOL, pool),
        (LABEL_FORGE, forge),
        (LABEL_FORGE_RUNNER_ID, forge_runner_id),
        (LABEL_RUNNER_ID, runner_id),
    ):
        if value:
            labels[key] = value
    return labels


GpuRequest = Literal["all"] | int | None

#: How the runner credential reaches a container (docs/runner-contract.md): ``stdin``
#: written to its stdin through an attach made before start (Docker; the Swarm runtime,
#: which cannot attach before start, uses its file secret), ``file`` copied in as a file,
#: ``env`` set in its environment (visible in ``docker inspect``).
CredentialDelivery = Literal["stdin", "file", "env"]


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One runner container, fully described. Built by the reconciler from pool config
    and the provider's :class:`providers.base.Registration`."""

    runner_id: str
    name: str
    instance_id: str
    pool: str
    forge: str
    forge_runner_id: str
    image: str
    command: tuple[str, ...]
    credential: str = dataclasses.field(repr=False)
    credential_env: str
    credential_delivery: CredentialDelivery = "stdin"
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    platform: str = "linux/amd64"
    gpus: GpuRequest = None
    gpu_capabilities: tuple[str, ...] = ("gpu", "utility", "compute")
    cpus: float | None = None
    memory: str | None = None  # docker notation: "2g", "512m"
    pids_limit: int = 4096
    network: str | None = None  # None: the instance's isolated bridge network
    volumes: tuple[str, ...] = ()  # "src:dst[:ro]"
    privileged: bool = False
    docker_socket: bool = False
    cap_add: tuple[str, ...] = ()
    user: str | None = None
    hosts: tuple[str, ...] = ()  # allowed Docker hosts; () = any that fits
    read_only: bool = False  # read-only root filesystem; /tmp (and the credential) elsewhere
    constraints: tuple[str, ...] = ()  # Swarm placement constraints (pool option)


#: A runner whose container is (or is about to be) running: the Docker container states,
#: plus the Swarm task states before ``running`` (the engine is still placing, pulling or
#: starting it; the Swarm runtime reports task states as they are).
LIVE_STATUSES = frozenset(
    {"running", "restarting", "paused"}
    | {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A labelled container as the runtime sees it."""

    id: str
    name: str
    host: str
    status: str
    runner_id: str = ""
    pool: str = ""
    forge: str = ""
    forge_runner_id: str = ""
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    #: Swarm runtime only: the engine's explanation of a failed or unplaceable task.
    error: str = ""

    @property
    def running(self) -> bool:
        return self.status in LIVE_STATUSES


def container_info(
    labels: Mapping[str, str],
    *,
    container_id: str,
    name: str,
    host: str,
    status: str,
    exit_code: int | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    error: str = "",
) -> ContainerInfo:
    """A container (or swarm service) of ours as :class:`ContainerInfo`: whose it is
    (runner, pool, forge, registration) from the labels :func:`labels_for` gave it, the
    rest as the engine reports it. The one place both runtimes read those labels back."""
    return ContainerInfo(
        id=container_id,
        name=name,
        host=host,
        status=status,
        runner_id=labels.get(LABEL_RUNNER_ID, ""),
        pool=labels.get(LABEL_POOL, ""),
        forge=labels.get(LABEL_FORGE, ""),
        forge_runner_id=labels.get(LABEL_FORGE_RUNNER_ID, ""),
        exit_code=exit_code,
        started_at=started_at,
        finished_at=finished_at,
        error=error,
    )


def parse_time(value: str | None) -> datetime | None:
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


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """This instance's containers on every host that answered, and the hosts that did not.

    A container missing from a host in ``unreachable`` is *unknown*, not gone: the
    reconciler must not clean up after it until the host answers again.
    """

    containers: tuple[ContainerInfo, ...]
    unreachable: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerEvent:
    """A container of ours changed state (from the engine's event stream)."""

    host: str
    container_id: str
    action: str  # "start" | "die" | "oom" | "destroy"
    runner_id: str = ""
    exit_code: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NodeStatus:
    """For /status: one node of a Swarm endpoint."""

    id: str
    hostname: str
    arch: str  # amd64 | arm64 | the engine's own spelling when unknown
    gpus: int  # generic resources of kind NVIDIA-GPU the node advertises
    availability: str  # active | pause | drain
    state: str  # ready | down | unknown | disconnected
    role: str  # manager | worker


@dataclasses.dataclass(frozen=True, slots=True)
class HostStatus:
    """For /status: one Docker endpoint."""

    name: str
    url: str
    ok: bool
    arch: str
    gpus: int
    max_containers: int
    containers: int
    error: str = ""
    #: ``container`` (the daemon places containers) or ``swarm`` (the engine places services).
    mode: str = "container"
    #: Swarm endpoints: the nodes the engine may place on, as last listed.
    nodes: tuple[NodeStatus, ...] = ()


class RuntimeFailure(Exception):
    """Base of the runtime's own errors (docker SDK errors are translated into these)."""


class HostUnavailable(RuntimeFailure):
    """A Docker endpoint does not answer."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"docker host {host!r} unavailable: {message}")
        self.host = host


class NoCapacity(RuntimeFailure):
    """No configured host fits the spec (arch, GPUs) and has room. ``reason`` says which."""


class ContainerStartError(RuntimeFailure):
    """The container could not be created or started (image missing, GPU absent...)."""

    def __init__(self, message: str, *, host: str = "", container_id: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.container_id = container_id


EventCallback = Callable[[ContainerEvent], None]


@runtime_checkable
class ContainerRuntime(Protocol):
    """**Protocol:** create, run and remove runner containers on one or more hosts."""

    instance_id: str

    async def start(self, on_event: EventCallback) -> None:
        """Connect to every host, ensure the instance network, start watching events."""
        ...

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Place, create (not start) and deliver the credential. Raises NoCapacity,
        HostUnavailable or ContainerStartError."""
        ...

    async def start_container(self, info: ContainerInfo) -> ContainerInfo:
        """Start a created container and return it as the engine accepted it (running,
        or for Swarm the task's state). Not a health check: a container that exits at
        once is reported by the event stream and :meth:`list`. Raises
        ContainerStartError (e.g. no GPU here)."""
        ...

    async def stop(self, host: str, container_id: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``. A missing container is not an error."""
        ...

    async def remove(self, host: str, container_id: str) -> None:
        """Force-remove the container and its anonymous volumes. Missing is not an error."""
        ...

    async def list(self) -> Listing:
        """This instance's labelled containers on every reachable host."""
        ...

    async def logs(self, host: str, container_id: str, tail: int = 100) -> str:
        """The last ``tail`` lines of the container's output."""
        ...

    def hosts(self) -> Sequence[HostStatus]:
        """In-memory view of every host; never does I/O."""
        ...

    def placeable(self, platform: str, gpus: GpuRequest, hosts: tuple[str, ...] = ()) -> str:
        """'' when some live host could take such a container, else the reason why not."""
        ...

    async def release_unused(self) -> None:
        """Remove this instance's network and volumes where no container uses them.

        Called at shutdown when no runner is left, so a stopped daemon leaves nothing.
        """
        ...

    async def aclose(self) -> None:
        """Stop watching events and close clients. Leaves containers running."""
        ...
