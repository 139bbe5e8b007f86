"""Pool config -> runtime spec: the only place a :class:`PoolConfig` becomes a container.

Pure (no I/O, no clock), so a second runtime (Swarm, Kubernetes) takes the same
:class:`~orchestrator.runtime.ContainerSpec` and the lifecycle never learns what shape a
runtime wants. Placement questions (:meth:`ContainerRuntime.placeable`) ask with the same
GPU request and platform this module derives, so "can it run?" and "run it" agree.
"""

from __future__ import annotations

from orchestrator.config import PoolConfig
from orchestrator.models import ForgeKind, concrete_platform
from orchestrator.runtime import ContainerSpec, CredentialDelivery, GpuRequest
from providers.base import Registration

#: The forge's official runner image, used when neither the pool nor RUNNER_IMAGE names one.
DEFAULT_IMAGES: dict[ForgeKind, str] = {
    ForgeKind.GITLAB: "runner-orchestrator/gitlab-runner:latest",
    ForgeKind.GITHUB: "runner-orchestrator/github-runner:latest",
}


def gpu_request(pool: PoolConfig) -> GpuRequest:
    """The pool's ``gpu`` setting as the runtime's request: None, ``"all"`` or a count."""
    if pool.gpu == "none":
        return None
    if pool.gpu == "all":
        return "all"
    return int(pool.gpu)


def pool_platform(pool: PoolConfig) -> str:
    """Where the pool's runners run when no job says otherwise (``auto`` -> the default)."""
    return concrete_platform(pool.platform)


def runner_image(pool: PoolConfig, forge_kind: ForgeKind, default_image: str = "") -> str:
    """Pool image, else the daemon-wide RUNNER_IMAGE, else the forge's official image."""
    return pool.image or default_image or DEFAULT_IMAGES[forge_kind]


def container_spec(
    pool: PoolConfig,
    registration: Registration,
    *,
    runner_id: str,
    name: str,
    instance_id: str,
    forge: str,
    forge_kind: ForgeKind,
    platform: str,
    default_image: str = "",
    credential_delivery: CredentialDelivery = "stdin",
) -> ContainerSpec:
    """The runtime spec of one runner of ``pool`` registered as ``registration``.

    Registration extras win over pool ``env`` (the forge knows what its runner needs);
    the credential travels only in the spec's ``credential`` field, never in env/command.
    """
    return ContainerSpec(
        runner_id=runner_id,
        name=name,
        instance_id=instance_id,
        pool=pool.name,
        forge=forge,
        forge_runner_id=registration.forge_runner_id,
        image=runner_image(pool, forge_kind, default_image),
        command=registration.command,
        credential=registration.credential,
        credential_env=registration.credential_env,
        credential_delivery=credential_delivery,
        env={**pool.env, **registration.env},
        platform=concrete_platform(platform),
        gpus=gpu_request(pool),
        gpu_capabilities=tuple(pool.gpu_capabilities),
        cpus=pool.cpus,
        memory=pool.memory,
        pids_limit=pool.pids_limit,
        network=pool.network,
        volumes=tuple(pool.volumes),
        privileged=pool.privileged,
        docker_socket=pool.docker_socket,
        cap_add=tuple(pool.cap_add),
        user=pool.user,
        read_only=pool.read_only,
        hosts=tuple(pool.hosts),
        constraints=tuple(pool.constraints),
    )
