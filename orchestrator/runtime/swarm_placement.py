"""Where a runner's service may go: a view over the Swarm endpoints, no I/O.

Split from :mod:`orchestrator.runtime.swarm` because it is pure over what the last
listing saw (each endpoint's nodes and runner services), so ``placeable`` can answer the
planner without a call to any engine. Placement stops at the endpoint: which node runs a
task is the engine's choice; the pool's own constraints and free resources are left to
it, and ``start_container`` raises with the engine's reason when no node satisfies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.runtime import ContainerSpec, GpuRequest, HostStatus, NoCapacity
from orchestrator.runtime.swarm_engine import Endpoint
from orchestrator.runtime.swarm_spec import nodes_reason


def status(ep: Endpoint) -> HostStatus:
    """One endpoint as a host: its ready nodes' architectures and GPUs, as last listed."""
    ready = [n for n in ep.nodes if n.state == "ready" and n.availability == "active"]
    return HostStatus(
        name=ep.name,
        url=ep.config.url,
        ok=ep.ok,
        arch=",".join(sorted({n.arch for n in ready})),
        gpus=sum(n.gpus for n in ready),
        max_containers=ep.config.max_containers,
        containers=len(ep.services),
        error=ep.error,
        mode="swarm",
        nodes=ep.nodes,
    )


def reason(ep: Endpoint, platform: str, gpus: GpuRequest) -> str:
    """'' when ``ep`` could take such a runner now, else why not."""
    if not ep.ok:
        return f"{ep.name}: {ep.error or 'down'}"
    if len(ep.services) >= ep.config.max_containers:
        return f"{ep.name}: full ({len(ep.services)}/{ep.config.max_containers})"
    why = nodes_reason(ep.nodes, platform, gpus)
    return f"{ep.name}: {why}" if why else ""


def placeable(
    endpoints: Iterable[Endpoint], platform: str, gpus: GpuRequest, hosts: Sequence[str] = ()
) -> str:
    """'' when some swarm endpoint has a ready node of that arch with enough GPUs."""
    candidates = [e for e in endpoints if not hosts or e.name in hosts]
    if not candidates:
        return f"no swarm endpoint among allowed {list(hosts)}"
    try:
        reasons = [reason(e, platform, gpus) for e in candidates]
    except NoCapacity as exc:
        return str(exc)
    if any(not r for r in reasons):
        return ""
    return "; ".join(reasons)


def choose(endpoints: Sequence[Endpoint], spec: ContainerSpec) -> Endpoint:
    """The least loaded endpoint that fits ``spec``, or :class:`NoCapacity` saying why."""
    candidates = [e for e in endpoints if not spec.hosts or e.name in spec.hosts]
    fitting = [e for e in candidates if not reason(e, spec.platform, spec.gpus)]
    if not fitting:
        raise NoCapacity(placeable(endpoints, spec.platform, spec.gpus, spec.hosts))
    return min(fitting, key=lambda e: len(e.services) / max(1, e.config.max_containers))
