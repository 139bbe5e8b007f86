"""The operator's ceiling over pool authors: every pool option that widens what a runner
(and so every job on it) can reach is checked here, once, when the configuration loads.

The runtime applies a :class:`~orchestrator.runtime.ContainerSpec` as it is, so this is the
one place to audit; docs/security.md has the same rules as a table. A pool may ask for
less than the defaults (``read_only``, a non-root ``user``, ``network: none``) freely.

Host paths are judged by their text, because the daemon usually cannot see the Docker
host's filesystem (remote hosts, or the daemon in a container): the path is normalised
(``//``, ``.``, ``..``; ``/var/run`` is ``/run``) and then compared. A symlink *inside* an
allowed host path is resolved by the Docker host, not here; docs/security.md says what
that means for ``allowed_host_paths``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from orchestrator.models import CREDENTIAL_DIR

if TYPE_CHECKING:
    from orchestrator.config_pools import Ceiling, PoolConfig

#: Where Docker-compatible engines keep their API sockets and state; a bind of any of
#: these, of a parent of one, or of anything below ``/run`` needs ``allow_docker_socket``.
SOCKET_PATHS = (
    "/run/docker.sock",
    "/run/docker",
    "/run/containerd",
    "/run/podman",
    "/run/user",
    "/var/lib/docker",
    "/var/lib/containerd",
)
#: Volume options that keep a mount inside the container. ``shared``/``slave`` and their
#: recursive forms propagate mounts back to the host and are refused.
SAFE_VOLUME_OPTIONS = frozenset(
    {"ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated", "private", "rprivate"}
)
#: gitlab-runner docker-executor flags that widen the *job* containers it starts. They only
#: take effect where the runner reaches a Docker engine, i.e. with the socket grant.
WIDENING_EXECUTOR_FLAGS = (
    "--docker-host",
    "--docker-privileged",
    "--docker-cap-add",
    "--docker-devices",
    "--docker-device-cgroup-rules",
    "--docker-security-opt",
    "--docker-network-mode",
    "--docker-volumes",
    "--docker-userns",
    "--docker-ipcmode",
    "--docker-sysctls",
)
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ROOT_NAMES = frozenset({"0", "root"})


def host_path(path: str) -> str:
    """``path`` as the Docker host would read it, textually: one leading slash, no ``.``
    or ``..`` parts, and ``/var/run`` folded into ``/run`` (a symlink on every distro)."""
    normal = posixpath.normpath("/" + path.lstrip("/"))
    if normal == "/var/run" or normal.startswith("/var/run/"):
        normal = "/run" + normal.removeprefix("/var/run")
    return normal


def _within(path: str, prefix: str) -> bool:
    return prefix in {"/", path} or path.startswith(prefix + "/")


def reaches_docker(path: str) -> bool:
    """True when a bind of host ``path`` (normalised) could expose a container engine.

    ``/proc`` counts because ``/proc/<pid>/root`` is every path of the host again, beyond
    any textual check."""
    if path.endswith(".sock") or _within(path, "/run") or _within(path, "/proc"):
        return True
    return any(_within(socket, path) or _within(path, socket) for socket in SOCKET_PATHS)


def cap_name(cap: str) -> str:
    """Docker's spelling: upper case without ``CAP_`` (``cap_chown`` is ``CHOWN``)."""
    return cap.strip().upper().removeprefix("CAP_")


def is_root(user: str | None) -> bool:
    """True when ``user`` (Docker ``user[:group]``) runs as uid 0, or is unset (the image's
    default user, root for the official runner images)."""
    if not user:
        return True
    return user.split(":", 1)[0].strip() in _ROOT_NAMES


def _volume_problems(where: str, spec: str, ceiling: Ceiling) -> list[str]:
    parts = spec.split(":")
    if len(parts) == 1:  # an anonymous volume at this container path
        return [] if spec.startswith("/") else [f"{where}: must be SOURCE:DEST[:OPTIONS]"]
    if len(parts) > 3:
        return [f"{where}: must be SOURCE:DEST[:OPTIONS]"]
    source, dest = parts[0], parts[1]
    problems = []
    if not dest.startswith("/"):
        problems.append(f"{where}: the container path must be absolute")
    elif _within(CREDENTIAL_DIR, host_path(dest)):
        # a volume there is shared with every runner using it: their credentials with it
        problems.append(f"{where}: the container path would hold the runner credential")
    options = set(parts[2].split(",")) if len(parts) == 3 else set()
    bad = sorted(options - SAFE_VOLUME_OPTIONS)
    if bad:
        problems.append(
            f"{where}: options must be among {sorted(SAFE_VOLUME_OPTIONS)} "
            "(mount propagation to the host is refused)"
        )
    if not source.startswith("/"):
        if not _VOLUME_NAME.fullmatch(source):
            problems.append(f"{where}: the source must be a volume name or an absolute host path")
        return problems
    path = host_path(source)
    if reaches_docker(path) and not ceiling.allow_docker_socket:
        problems.append(
            f"{where}: a host path at or around a container engine socket (/run, "
            "/var/run, *.sock, /proc, /var/lib/docker) is forbidden by ceiling.allow_docker_socket"
        )
    elif not any(_within(path, host_path(p)) for p in ceiling.allowed_host_paths):
        problems.append(
            f"{where}: host path binds are forbidden unless under "
            "ceiling.allowed_host_paths (use a named volume)"
        )
    return problems


def check_pool(index: int, pool: PoolConfig, ceiling: Ceiling) -> list[str]:
    """Every way ``pool`` asks for more than ``ceiling`` allows; one line each, naming
    the field (``pools[i].volumes[j]: ...``)."""
    where = f"pools[{index}]"
    problems: list[str] = []
    if pool.privileged and not ceiling.allow_privileged:
        problems.append(f"{where}.privileged: forbidden by ceiling.allow_privileged")
    if pool.docker_socket and not ceiling.allow_docker_socket:
        problems.append(f"{where}.docker_socket: forbidden by ceiling.allow_docker_socket")
    problems += [_network_problem(where, pool.network, ceiling)]
    allowed_caps = {cap_name(c) for c in ceiling.allowed_cap_add}
    extra_caps = sorted({cap_name(c) for c in pool.cap_add} - allowed_caps)
    if extra_caps:
        named = [c if re.fullmatch(r"[A-Z_]{1,32}", c) else "<hidden>" for c in extra_caps]
        problems.append(f"{where}.cap_add: {named} not in ceiling.allowed_cap_add")
    if ceiling.max_cpus is not None and (pool.cpus is None or pool.cpus > ceiling.max_cpus):
        problems.append(f"{where}.cpus: must be set and <= ceiling.max_cpus")
    gpus = 0.0 if pool.gpu == "none" else (float("inf") if pool.gpu == "all" else pool.gpu)
    if ceiling.max_gpus is not None and gpus > ceiling.max_gpus:
        problems.append(f"{where}.gpu: exceeds ceiling.max_gpus")
    if not ceiling.allow_root and is_root(pool.user):
        problems.append(
            f"{where}.user: must name a non-root user (e.g. '1001:1001') because "
            "ceiling.allow_root is false"
        )
    if ceiling.require_read_only and not pool.read_only:
        problems.append(f"{where}.read_only: must be true (ceiling.require_read_only)")
    for i, spec in enumerate(pool.volumes):
        problems += _volume_problems(f"{where}.volumes[{i}]", spec, ceiling)
    if not ceiling.allow_docker_socket:
        problems += _executor_problems(where, pool.executor_args)
    return [p for p in problems if p]


def _network_problem(where: str, network: str | None, ceiling: Ceiling) -> str:
    if network is None or network == "none":
        return ""
    if network == "host":
        if ceiling.allow_host_network:
            return ""
        return f"{where}.network: host network forbidden by ceiling.allow_host_network"
    if network in ceiling.allowed_networks:
        return ""
    kind = "another container's network namespace" if network.startswith("container:") else ""
    return (
        f"{where}.network: joining {kind or 'a network'} is forbidden unless listed in "
        "ceiling.allowed_networks"
    )


def _executor_problems(where: str, args: Iterable[str]) -> list[str]:
    problems = []
    for i, arg in enumerate(args):
        flag = arg.split("=", 1)[0]
        if flag in WIDENING_EXECUTOR_FLAGS:
            problems.append(
                f"{where}.executor_args[{i}]: {flag} widens job containers and needs "
                "ceiling.allow_docker_socket"
            )
    return problems
