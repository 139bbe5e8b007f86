"""One pool against the rest of the configuration: its forge, its Docker hosts, what
Swarm can run, its forge's runner scopes and the operator's ceiling.

Each check returns one line per problem naming the field (``pools[2].hosts[0]: ...``), so
that :class:`orchestrator.config.Settings` reports every problem at once.
"""

from __future__ import annotations

from orchestrator import ceiling as ceiling_rules
from orchestrator.config_env import pool_field
from orchestrator.config_errors import shown_all
from orchestrator.config_forges import AnyForge
from orchestrator.config_pools import Ceiling, DockerHostConfig, PoolConfig


def pool_problems(
    index: int,
    pool: PoolConfig,
    forges: list[AnyForge],
    docker_hosts: list[DockerHostConfig],
    ceiling: Ceiling,
    *,
    from_env: bool,
) -> tuple[PoolConfig, list[str]]:
    """``pool`` with its forge filled in (when only one is configured), and what is wrong
    with it in this configuration."""
    pool, problems = _with_forge(pool, forges, index)
    problems += ceiling_rules.check_pool(index, pool, ceiling)
    problems += _several_scopes_problems(index, pool, forges, from_env=from_env)
    host_names = [h.name for h in docker_hosts]
    for h, host in enumerate(pool.hosts):
        if host not in host_names:
            problems.append(
                f"pools[{index}].hosts[{h}]: no docker host of that name "
                f"(have {shown_all(host_names)})"
            )
    problems += _swarm_problems(pool, index, docker_hosts)
    return pool, problems


def _with_forge(
    pool: PoolConfig, forges: list[AnyForge], index: int
) -> tuple[PoolConfig, list[str]]:
    names = [f.name for f in forges]
    if not pool.forge:
        if len(forges) != 1:
            return pool, [
                f"pools[{index}].forge: required when {len(forges)} forges are configured"
            ]
        return pool.model_copy(update={"forge": names[0]}), []
    if pool.forge not in names:
        return pool, [f"pools[{index}].forge: no forge of that name (have {shown_all(names)})"]
    return pool, []


def _several_scopes_problems(
    index: int, pool: PoolConfig, forges: list[AnyForge], *, from_env: bool
) -> list[str]:
    """A forge whose runners serve one repository/project each (several repos and no
    org; several GitLab projects or groups and no ``runner_project_id``/
    ``runner_group_id``) registers each runner where its job is. A warm runner
    (``min_idle``) or a reusable one (``ephemeral: false``) would sit in one scope while
    the planner counts it free for a job of another, which would then wait forever."""
    forge = next((f for f in forges if f.name == pool.forge), None)
    scopes = forge.runner_scopes() if forge is not None else []
    if len(scopes) < 2:
        return []
    where = f"forge {pool.forge!r} registers runners in {len(scopes)} scopes, each job's in its own"
    fix = "a GitHub org or a GitLab group/instance runner type serves them all"
    out: list[str] = []
    if pool.min_idle > 0:
        out.append(
            f"pools[{index}].{pool_field('min_idle', from_env=from_env)}: must be 0: {where}; "
            f"a warm runner can serve only one of them ({fix})"
        )
    if not pool.ephemeral:
        out.append(
            f"pools[{index}].{pool_field('ephemeral', from_env=from_env)}: must be true: "
            f"{where}; a reusable runner serves only the scope of its first job ({fix})"
        )
    return out


def _swarm_problems(
    pool: PoolConfig, index: int, docker_hosts: list[DockerHostConfig]
) -> list[str]:
    """What a pool that may land on a Swarm endpoint asks and Swarm cannot do."""
    where = f"pools[{index}]"
    swarm = {h.name for h in docker_hosts if h.mode == "swarm"}
    on_swarm = bool(swarm & set(pool.hosts)) if pool.hosts else bool(swarm)
    if not on_swarm:
        if pool.constraints:
            return [f"{where}.constraints: only for pools on mode: swarm hosts"]
        return []
    problems = []
    if pool.privileged:
        problems.append(f"{where}.privileged: Swarm services cannot run privileged")
    if pool.gpu == "all":
        problems.append(
            f"{where}.gpu: 'all' cannot be expressed on Swarm (it reserves a count of "
            "the nodes' generic resources); give a count"
        )
    if pool.network == "none":
        problems.append(f"{where}.network: Swarm has no 'none' network for services")
    return problems
