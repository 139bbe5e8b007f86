"""Which Docker host gets the next runner container: a pure function over host views.

Kept free of I/O so the daemon can ask "could this pool be placed at all?" on every
reconcile (``DockerRuntime.placeable``) without touching a socket, and so the rules can be
table-tested. The runtime feeds it :class:`HostStatus` values from its in-memory view.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.runtime import GpuRequest, HostStatus, NoCapacity

#: ``linux/<arch>`` platforms the daemon knows, mapped to the host ``arch`` config value.
PLATFORM_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def platform_arch(platform: str) -> str:
    """``linux/arm64`` -> ``arm64``. Unknown platforms raise :class:`NoCapacity` (no host
    can be of an arch the config cannot even express)."""
    try:
        return PLATFORM_ARCH[platform]
    except KeyError:
        raise NoCapacity(
            f"unsupported platform {platform!r} (want linux/amd64 or linux/arm64)"
        ) from None


def gpus_needed(gpus: GpuRequest) -> int:
    """How many GPUs a host must have: ``"all"`` needs at least one, ``None`` none."""
    if gpus is None:
        return 0
    if gpus == "all":
        return 1
    return int(gpus)


def choose_host(
    hosts: Sequence[HostStatus],
    platform: str,
    gpus: GpuRequest,
    allowed: tuple[str, ...] = (),
) -> str:
    """The name of the least loaded host that fits, else :class:`NoCapacity` saying why.

    Filters are applied in the order an operator would debug them, and the reason names
    the first filter that emptied the candidate list: not allowed / no host of that arch /
    no GPUs / all down / all full. Ties on load (containers / max_containers) go to the
    host with more free slots, then to configuration order, so placement is deterministic.
    """
    arch = platform_arch(platform)
    need_gpus = gpus_needed(gpus)
    candidates = [h for h in hosts if not allowed or h.name in allowed]
    if not candidates:
        raise NoCapacity(
            f"no docker host among allowed {list(allowed)}"
            if allowed
            else "no docker hosts configured"
        )
    candidates = [h for h in candidates if h.arch == arch]
    if not candidates:
        raise NoCapacity(f"no docker host of arch {arch} for {platform}")
    if need_gpus:
        candidates = [h for h in candidates if h.gpus >= need_gpus]
        if not candidates:
            raise NoCapacity(f"no {arch} docker host with {need_gpus} or more GPUs")
    alive = [h for h in candidates if h.ok]
    if not alive:
        errors = "; ".join(f"{h.name}: {h.error or 'down'}" for h in candidates)
        raise NoCapacity(f"all fitting docker hosts are down ({errors})")
    roomy = [h for h in alive if h.containers < h.max_containers]
    if not roomy:
        raise NoCapacity(
            "all fitting docker hosts are full ("
            + ", ".join(f"{h.name} {h.containers}/{h.max_containers}" for h in alive)
            + ")"
        )
    order = {h.name: i for i, h in enumerate(roomy)}
    best = min(
        roomy,
        key=lambda h: (
            h.containers / h.max_containers,
            -(h.max_containers - h.containers),
            order[h.name],
        ),
    )
    return best.name
