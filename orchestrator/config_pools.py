"""The pool sections of the configuration and where they may run: a runner template
(:class:`PoolConfig`), a Docker endpoint (:class:`DockerHostConfig`) and the operator's
ceiling over every pool (:class:`Ceiling`; its rules are in :mod:`orchestrator.ceiling`).
How a pool fits the rest of the configuration is checked in
:mod:`orchestrator.config_pool_checks`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.config_checks import (
    DAY_S,
    NAME_PATTERN,
    WEEK_S,
    ConfigModel,
    Cpus,
    DockerUrl,
    RunnerCount,
    entries,
    matching,
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Names the runtime sets itself in every runner container; a pool may not override them.
_RESERVED_ENV = frozenset(
    {"RUNNER_CREDENTIAL_ENV", "RUNNER_CREDENTIAL_FILE", "RUNNER_CREDENTIAL_STDIN"}
)


class PoolConfig(ConfigModel):
    """A runner template: which jobs it serves and how its containers look."""

    name: str = Field(pattern=NAME_PATTERN)
    forge: str = ""
    """Forge name this pool registers with; empty = the only forge configured."""
    labels: list[str] = []
    """GitLab tags / GitHub labels this pool's runners carry."""
    run_untagged: bool = False
    """GitLab: also take jobs with no tags."""
    image: str = ""
    """Runner image; empty = ``RUNNER_IMAGE`` or the forge's official runner image."""
    platform: Literal["linux/amd64", "linux/arm64", "auto"] = "linux/amd64"
    """``auto`` picks per job from its tags (amd64/x86_64/x64, arm64/aarch64)."""
    gpu: Literal["none", "all"] | int = "none"
    """``none``, ``all`` or a count of GPUs (NVIDIA device requests)."""
    gpu_capabilities: list[str] = ["gpu", "utility", "compute"]
    cpus: Cpus | None = None
    memory: str | None = "4g"
    """Docker notation (``512m``, ``4g``); a limit is always set unless ``null``."""
    pids_limit: int = Field(4096, ge=16, le=4_194_304)
    min_idle: RunnerCount = 0
    """Runners kept warm with no job."""
    max_idle: RunnerCount | None = None
    """Idle runners beyond this are retired without waiting for the cooldown."""
    max_runners: RunnerCount = 10
    cooldown_s: float | None = Field(None, ge=0, le=WEEK_S)
    """Idle time before retirement; default from ``IDLE_TIMEOUT`` / ``RUNNER_COOLDOWN_MINUTES``."""
    start_timeout_s: float = Field(600.0, ge=1, le=DAY_S)
    ephemeral: bool = True
    """One job per runner (GitHub JIT / GitLab ``--max-builds 1``), else reusable."""
    executor: str = "shell"
    """GitLab executor for ``run-single`` (``shell``, ``docker``...)."""
    executor_args: list[str] = []
    """Extra ``run-single`` flags, e.g. ``["--docker-image", "alpine:3"]``."""
    env: dict[str, str] = {}
    """Extra environment of the runner container (masked by ``check-config``)."""
    volumes: list[str] = []
    """``name:/path[:ro]`` named volumes; host paths only under ``ceiling.allowed_host_paths``."""
    network: str | None = None
    """Docker network; empty = the instance's isolated bridge network; ``none``; ``host`` or
    any other network only when the ceiling allows it."""
    privileged: bool = False
    docker_socket: bool = False
    """Mount the host's Docker socket (root-equivalent on the host!)."""
    cap_add: list[str] = []
    user: str | None = None
    """``uid[:gid]`` the runner runs as; empty = the image's user (root in the official
    images). ``ceiling.allow_root: false`` requires a non-root one."""
    read_only: bool = False
    """Read-only root filesystem (``/tmp`` becomes a tmpfs); the image must write only to
    volumes and tmpfs."""
    hosts: list[str] = []
    """Docker host names this pool may use; empty = any that fits."""
    constraints: Annotated[
        list[str],
        # The value is not echoed: config errors never show input (it may be a secret).
        entries(
            matching(r"[A-Za-z0-9_.\-]+\s*(==|!=)\s*\S+"),
            "not a constraint like node.labels.ssd==true",
        ),
    ] = []
    """Swarm placement constraints added to this pool's services (``node.labels.ssd==true``);
    only for pools placed on ``mode: swarm`` endpoints."""

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for index, (key, item) in enumerate(value.items()):
            if not _ENV_NAME.fullmatch(key) or key.upper() in _RESERVED_ENV:
                raise ValueError(f"entry {index + 1}: not a usable environment variable name")
            if "\0" in item:
                raise ValueError(f"entry {index + 1}: the value contains a NUL character")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> PoolConfig:
        if self.min_idle > self.max_runners:
            raise ValueError(
                f"min_idle ({self.min_idle}) is more than max_runners ({self.max_runners})"
            )
        return self

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("a GPU count must be 1 or more (use 'none' for no GPU)")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(\.\d+)?[bkmgBKMG]?", value):
            raise ValueError("must look like 512m or 4g")
        return value


class DockerHostConfig(ConfigModel):
    """One Docker endpoint the runtime may place runners on."""

    name: str = Field(pattern=NAME_PATTERN)
    url: DockerUrl = "unix:///var/run/docker.sock"
    """``unix://``, ``tcp://host:2376`` (with TLS below) or ``ssh://user@host``."""
    arch: Literal["amd64", "arm64"] = "amd64"
    gpus: int = Field(0, ge=0)
    max_containers: int = Field(50, ge=0)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_verify: bool = True
    mode: Literal["container", "swarm"] = "container"
    """``container``: the daemon places plain containers here; ``swarm``: the endpoint is a
    Swarm manager and the engine places one service per runner on its nodes (arch and GPUs
    then come from the nodes, not from ``arch``/``gpus``)."""

    @model_validator(mode="after")
    def _swarm_fields(self) -> DockerHostConfig:
        if self.mode == "swarm" and self.gpus:
            raise ValueError("gpus: not used with mode swarm (nodes advertise GPUs themselves)")
        return self


class Ceiling(ConfigModel):
    """What pools may ask for at most. The operator's guard rail over pool authors; the
    rules are in :mod:`orchestrator.ceiling` and the table in docs/security.md."""

    allow_privileged: bool = False
    allow_docker_socket: bool = False
    """Also covers host binds at or around an engine socket and widening executor flags."""
    allow_host_network: bool = False
    allowed_networks: list[str] = []
    """Docker networks (or ``container:<name>``) a pool may join besides its own bridge."""
    allowed_host_paths: Annotated[
        list[str], entries(lambda path: path.startswith("/"), "entry {n} is not an absolute path")
    ] = []
    """Host directories pools may bind-mount (and what is below them)."""
    allowed_cap_add: list[str] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]
    allow_root: bool = True
    """False: every pool must set a non-root ``user``."""
    require_read_only: bool = False
    """True: every pool must set ``read_only: true``."""
    max_cpus: float | None = Field(None, gt=0)
    max_gpus: int | None = Field(None, ge=0)
