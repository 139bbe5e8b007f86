"""The daemon's configuration: one pydantic-settings tree, built once at start.

Two ways in, which combine:

* **Environment variables** for the one-forge case, with the names admins know from
  earlier runner coordinators (``GITLAB_URL``, ``GITLAB_TOKEN``, ``GITHUB_TOKEN``,
  ``GITHUB_ORG``, ``GITHUB_REPO``, ``MIN_RUNNERS``, ``MAX_RUNNERS``, ``MAX_IDLE_RUNNERS``,
  ``RUNNER_COOLDOWN_MINUTES``, ``IDLE_TIMEOUT``, ``POLL_INTERVAL``) plus our own. Every
  top-level field of :class:`Settings` is read from the env var of the same name in
  upper case. List values take commas: ``GITHUB_REPO=acme/app,acme/lib``.
* **A YAML file** (``CONFIG_FILE`` or ``--config``) for several forges, pools and Docker
  hosts. Its keys are the same field names. An environment variable wins over the same
  top-level key in the file.

When the file names no forges or pools, they are derived from the environment: one
forge per token given and one default pool per forge.

Nothing here does I/O at import time; :func:`load_settings` is called once by the CLI.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from orchestrator.models import ForgeKind, PoolSpec

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DEFAULT_COOLDOWN_S = 300.0

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    """Accept ``a,b`` from env vars as well as real lists from YAML."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class GitLabForgeConfig(_Model):
    """One GitLab instance and what to watch on it."""

    kind: Literal["gitlab"] = "gitlab"
    name: str = Field("gitlab", pattern=NAME_PATTERN)
    url: str
    """Base URL, e.g. ``https://gitlab.example.com`` (no ``/api/v4``)."""
    token: SecretStr | None = None
    """Token with ``create_runner`` + ``manage_runner`` + ``read_api`` (or ``api``) scope.
    Defaults to ``GITLAB_TOKEN``."""
    projects: list[str] = []
    """Project ids or full paths whose pending jobs to watch."""

    @field_validator("projects", "groups", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) else v for v in value]
        return value

    groups: list[str] = []
    """Group ids or paths; expanded to all their projects, subgroups included."""
    instance: bool = False
    """Watch the whole instance with GraphQL (admin token). Falls back to projects."""
    runner_type: Literal["", "instance_type", "group_type", "project_type"] = ""
    """Runner type to create; empty derives it from the scope."""
    runner_group_id: int | None = None
    runner_project_id: int | None = None
    requests_per_minute: int = Field(300, ge=1, le=100_000)
    """Request budget. GitLab limits ``GET /projects/:id/jobs`` to 600/min/user by default."""
    include_created: bool = False
    """Also treat jobs in status ``created`` as demand (pre-scale)."""
    webhook_secret: SecretStr | None = None
    """``X-Gitlab-Token`` expected on ``POST /webhooks/gitlab``. Empty: webhooks refused."""
    group_refresh_s: float = Field(300.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL like https://gitlab.example.com")
        return value.rstrip("/").removesuffix("/api/v4")


class GitHubForgeConfig(_Model):
    """One GitHub (or GitHub Enterprise Server) and what to watch on it."""

    kind: Literal["github"] = "github"
    name: str = Field("github", pattern=NAME_PATTERN)
    token: SecretStr | None = None
    """PAT/App token with repo administration (repos) or org self-hosted runners (orgs).
    Defaults to ``GITHUB_TOKEN``."""
    api_url: str = "https://api.github.com"
    """GHES: ``https://host/api/v3``."""
    web_url: str = ""
    """Where runners register (``config.sh --url``); derived from ``api_url`` when empty."""
    repos: list[str] = []
    orgs: list[str] = []
    runner_group_id: int = Field(1, ge=1)
    webhook_secret: SecretStr | None = None
    """HMAC secret for ``X-Hub-Signature-256`` on ``POST /webhooks/github``."""
    low_rate_limit: int = Field(500, ge=0)
    """Below this many remaining requests the poll interval stretches."""
    requests_per_minute: int = Field(600, ge=1, le=100_000)
    """Pace of GitHub polling (its secondary limit is 900 points/min per endpoint)."""
    repo_refresh_s: float = Field(300.0, gt=0)

    @field_validator("repos")
    @classmethod
    def _repos(cls, value: list[str]) -> list[str]:
        for repo in value:
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
                raise ValueError(f"{repo!r} is not owner/repo")
        return value

    @model_validator(mode="after")
    def _web_url(self) -> GitHubForgeConfig:
        if not self.web_url:
            api = self.api_url.rstrip("/")
            web = (
                "https://github.com"
                if api == "https://api.github.com"
                else api.removesuffix("/api/v3")
            )
            object.__setattr__(self, "web_url", web)
        return self


ForgeConfig = Annotated[GitLabForgeConfig | GitHubForgeConfig, Field(discriminator="kind")]


class PoolConfig(_Model):
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
    cpus: float | None = Field(None, gt=0)
    memory: str | None = "4g"
    """Docker notation (``512m``, ``4g``); a limit is always set unless ``null``."""
    pids_limit: int = Field(4096, ge=16)
    min_idle: int = Field(0, ge=0)
    """Runners kept warm with no job."""
    max_idle: int | None = Field(None, ge=0)
    """Idle runners beyond this are retired without waiting for the cooldown."""
    max_runners: int = Field(10, ge=0)
    cooldown_s: float | None = Field(None, ge=0)
    """Idle time before retirement; default from ``IDLE_TIMEOUT`` / ``RUNNER_COOLDOWN_MINUTES``."""
    start_timeout_s: float = Field(600.0, gt=0)
    ephemeral: bool = True
    """One job per runner (GitHub JIT / GitLab ``--max-builds 1``), else reusable."""
    executor: str = "shell"
    """GitLab executor for ``run-single`` (``shell``, ``docker``...)."""
    executor_args: list[str] = []
    """Extra ``run-single`` flags, e.g. ``["--docker-image", "alpine:3"]``."""
    env: dict[str, str] = {}
    volumes: list[str] = []
    network: str | None = None
    """Docker network; empty = the instance's isolated bridge network; ``host`` allowed only
    when the ceiling allows it."""
    privileged: bool = False
    docker_socket: bool = False
    """Mount the host's Docker socket (root-equivalent on the host!)."""
    cap_add: list[str] = []
    user: str | None = None
    hosts: list[str] = []
    """Docker host names this pool may use; empty = any that fits."""
    constraints: list[str] = []
    """Swarm placement constraints added to this pool's services (``node.labels.ssd==true``);
    only for pools placed on ``mode: swarm`` endpoints."""

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+\s*(==|!=)\s*\S+", item):
                raise ValueError(f"{item!r} is not a constraint like node.labels.ssd==true")
        return value

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


class DockerHostConfig(_Model):
    """One Docker endpoint the runtime may place runners on."""

    name: str = Field(pattern=NAME_PATTERN)
    url: str = "unix:///var/run/docker.sock"
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

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(unix|tcp|ssh|http|https|npipe)://", value):
            raise ValueError("must start with unix://, tcp://, ssh:// or http(s)://")
        return value


class Ceiling(_Model):
    """What pools may ask for at most. The operator's guard rail over pool authors."""

    allow_privileged: bool = False
    allow_docker_socket: bool = False
    allow_host_network: bool = False
    allowed_cap_add: list[str] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]
    max_cpus: float | None = None
    max_gpus: int | None = None


class Settings(BaseSettings):
    """The whole configuration. Field names are the env var names in lower case."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        yaml_file=None,
        validate_default=True,
        use_attribute_docstrings=True,
    )

    # --- the one-forge case, with the names from earlier tools --------------------------
    gitlab_url: str | None = None
    """GitLab base URL; with GITLAB_TOKEN defines the forge ``gitlab``."""
    gitlab_token: SecretStr | None = None
    """GitLab token (create_runner, manage_runner, read_api scopes)."""
    gitlab_projects: CommaList = []
    """Comma-separated project ids/paths to watch."""
    gitlab_groups: CommaList = []
    """Comma-separated group ids/paths to watch (subgroups included)."""
    gitlab_instance: bool = False
    """Watch the whole GitLab instance (admin token; GraphQL)."""
    gitlab_webhook_secret: SecretStr | None = None
    """Secret expected in X-Gitlab-Token on POST /webhooks/gitlab."""
    gitlab_requests_per_minute: int = Field(300, ge=1)
    """GitLab request budget per minute (GitLab's jobs API default limit is 600)."""
    github_token: SecretStr | None = None
    """GitHub token; with GITHUB_ORG or GITHUB_REPO defines the forge ``github``."""
    github_org: CommaList = []
    """Comma-separated organisations (runners registered at org level)."""
    github_repo: CommaList = []
    """Comma-separated owner/repo list (runners registered at repo level)."""
    github_api_url: str = "https://api.github.com"
    """GitHub API base; GHES: https://host/api/v3."""
    github_webhook_secret: SecretStr | None = None
    """HMAC secret for X-Hub-Signature-256 on POST /webhooks/github."""
    github_runner_group_id: int = Field(1, ge=1)
    """Runner group for JIT runners (1 = Default)."""
    github_requests_per_minute: int = Field(600, ge=1)
    """GitHub request pace per minute (its secondary limit is 900 per endpoint)."""
    min_runners: int = Field(0, ge=0)
    """Idle runners kept warm in the default pool."""
    max_runners: int = Field(10, ge=0)
    """Global ceiling on runners (all pools); also the default pool's max."""
    max_idle_runners: int | None = Field(None, ge=0)
    """Idle runners beyond this are retired at once (default pool)."""
    runner_cooldown_minutes: float | None = Field(None, ge=0)
    """Idle minutes before a runner is retired (IDLE_TIMEOUT wins if both are set)."""
    idle_timeout: float | None = Field(None, ge=0)
    """Idle seconds before a runner is retired."""
    poll_interval: float = Field(15.0, gt=0, le=3600)
    """Seconds between reconciles (webhooks wake it earlier)."""
    forge_call_timeout: float = Field(30.0, gt=0, le=600, allow_inf_nan=False)
    """Overall deadline of one forge call (a whole job poll); a slower forge is paused."""
    forge_retry_after_max: float = Field(900.0, ge=1, le=86400, allow_inf_nan=False)
    """Longest pause a forge's Retry-After can impose (longer asks are clamped)."""

    # --- default pool, for the env-only case ---------------------------------------------
    runner_image: str = ""
    """Image for the default pool; empty = the forge's official runner image."""
    runner_labels: CommaList = []
    """Labels/tags the default pool serves."""
    runner_platform: Literal["linux/amd64", "linux/arm64", "auto"] = "linux/amd64"
    """Platform of the default pool."""
    runner_executor: str = "shell"
    """GitLab executor of the default pool."""
    runner_ephemeral: bool = True
    """Default pool runs one job per runner."""
    runner_run_untagged: bool = True
    """Default GitLab pool also takes untagged jobs."""
    runner_memory: str | None = "4g"
    """Memory limit of default-pool containers."""
    runner_cpus: float | None = None
    """CPU limit of default-pool containers."""

    # --- the daemon itself ----------------------------------------------------------------
    config_file: Path | None = None
    """YAML file with forges, pools, docker_hosts (optional)."""
    data_dir: Path = Path("data")
    """Where the state journal lives."""
    state_path: Path | None = None
    """SQLite journal path; default DATA_DIR/state.db."""
    instance_id: str = Field("", pattern=r"^([a-z0-9]{1,16})?$")
    """Names this daemon's runners and containers; default: generated once, kept in the journal."""
    http_host: str = "127.0.0.1"
    """Address the HTTP API binds to."""
    http_port: int = Field(8080, ge=0, le=65535)
    """Port of the HTTP API (0 = any free port, printed at start)."""
    management_enabled: bool = False
    """Enable POST/DELETE management endpoints (needs MANAGEMENT_TOKEN)."""
    management_token: SecretStr | None = None
    """Bearer token for the management endpoints."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto = JSON when stderr is not a TTY."""
    shutdown_mode: Literal["leave", "drain"] = "leave"
    """On SIGTERM: leave runners for the next start to adopt, or drain (remove) them."""
    shutdown_timeout: float = Field(30.0, gt=0)
    """Seconds to wait for the in-flight reconcile (and drain) on shutdown."""
    docker_host: str = "unix:///var/run/docker.sock"
    """Docker endpoint when DOCKER_HOSTS are not configured in YAML."""
    credential_delivery: Literal["file", "env"] = "file"
    """How the runner credential reaches the container (file hides it from docker inspect)."""
    network_name: str = ""
    """Isolated bridge network for runners; default runner-orchestrator-<instance id>."""
    max_webhook_bytes: int = Field(1_048_576, ge=1024)
    """Largest webhook body accepted (bigger: 413)."""
    gc_interval: float = Field(300.0, gt=0)
    """Seconds between orphan sweeps (forge registrations without containers)."""

    # --- YAML-only structure ----------------------------------------------------------------
    forges: list[ForgeConfig] = []
    """YAML only: several forges (GitLab and/or GitHub); see GitLabForgeConfig/GitHubForgeConfig."""
    pools: list[PoolConfig] = []
    """YAML only: runner pools (labels, image, platform, GPU, limits, min idle, max...)."""
    docker_hosts: list[DockerHostConfig] = []
    """YAML only: several Docker endpoints, each with arch, GPUs and a container cap."""
    ceiling: Ceiling = Ceiling()
    """YAML only: what pools may ask for at most (privileged, docker socket, host network...)."""

    _split = field_validator(
        "gitlab_projects",
        "gitlab_groups",
        "github_org",
        "github_repo",
        "runner_labels",
        mode="before",
    )(_split_commas)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    # --- derived structure -------------------------------------------------------------------

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        forges = list(self.forges) or self._forges_from_env()
        names = [f.name for f in forges]
        if len(set(names)) != len(names):
            raise ValueError(f"forges: duplicate forge names {names}")
        forges = [self._with_env_token(f) for f in forges]
        for index, forge in enumerate(forges):
            if forge.token is None or not forge.token.get_secret_value():
                env = "GITLAB_TOKEN" if forge.kind == "gitlab" else "GITHUB_TOKEN"
                raise ValueError(f"forges[{index}].token: missing (set it or {env})")
        pools = list(self.pools) or self._pools_from_env(forges)
        pools = [self._with_forge(p, forges, i) for i, p in enumerate(pools)]
        pool_names = [p.name for p in pools]
        if len(set(pool_names)) != len(pool_names):
            raise ValueError(f"pools: duplicate pool names {pool_names}")
        host_names = {h.name for h in self.docker_hosts}
        for index, pool in enumerate(pools):
            self._check_ceiling(pool, index)
            for host in pool.hosts:
                if host not in host_names:
                    raise ValueError(f"pools[{index}].hosts: unknown docker host {host!r}")
            self._check_swarm(pool, index)
        object.__setattr__(self, "forges", forges)
        object.__setattr__(self, "pools", pools)
        if self.management_enabled and not (
            self.management_token and self.management_token.get_secret_value()
        ):
            raise ValueError(
                "management_token: MANAGEMENT_ENABLED is true but MANAGEMENT_TOKEN is empty"
            )
        return self

    def _forges_from_env(self) -> list[GitLabForgeConfig | GitHubForgeConfig]:
        forges: list[GitLabForgeConfig | GitHubForgeConfig] = []
        if self.gitlab_url or self.gitlab_token:
            if not self.gitlab_url:
                raise ValueError("gitlab_url: GITLAB_TOKEN is set but GITLAB_URL is not")
            forges.append(
                GitLabForgeConfig(
                    url=self.gitlab_url,
                    token=self.gitlab_token,
                    projects=self.gitlab_projects,
                    groups=self.gitlab_groups,
                    instance=self.gitlab_instance,
                    webhook_secret=self.gitlab_webhook_secret,
                    requests_per_minute=self.gitlab_requests_per_minute,
                )
            )
        if self.github_token or self.github_org or self.github_repo:
            if not (self.github_org or self.github_repo):
                raise ValueError(
                    "github_repo: GITHUB_TOKEN is set but neither GITHUB_ORG nor GITHUB_REPO is"
                )
            forges.append(
                GitHubForgeConfig(
                    token=self.github_token,
                    api_url=self.github_api_url,
                    repos=self.github_repo,
                    orgs=self.github_org,
                    webhook_secret=self.github_webhook_secret,
                    runner_group_id=self.github_runner_group_id,
                    requests_per_minute=self.github_requests_per_minute,
                )
            )
        return forges

    def _with_env_token(
        self, forge: GitLabForgeConfig | GitHubForgeConfig
    ) -> GitLabForgeConfig | GitHubForgeConfig:
        if forge.token is not None:
            return forge
        token = self.gitlab_token if forge.kind == "gitlab" else self.github_token
        return forge.model_copy(update={"token": token})

    def _pools_from_env(
        self, forges: list[GitLabForgeConfig | GitHubForgeConfig]
    ) -> list[PoolConfig]:
        return [
            PoolConfig(
                name=forge.name,
                forge=forge.name,
                labels=self.runner_labels,
                run_untagged=self.runner_run_untagged,
                image=self.runner_image,
                platform=self.runner_platform,
                memory=self.runner_memory,
                cpus=self.runner_cpus,
                min_idle=self.min_runners,
                max_idle=self.max_idle_runners,
                max_runners=self.max_runners,
                ephemeral=self.runner_ephemeral,
                executor=self.runner_executor,
            )
            for forge in forges
        ]

    def _with_forge(
        self, pool: PoolConfig, forges: list[GitLabForgeConfig | GitHubForgeConfig], index: int
    ) -> PoolConfig:
        names = [f.name for f in forges]
        if not pool.forge:
            if len(forges) != 1:
                raise ValueError(
                    f"pools[{index}].forge: required when {len(forges)} forges are configured"
                )
            return pool.model_copy(update={"forge": names[0]})
        if pool.forge not in names:
            raise ValueError(f"pools[{index}].forge: unknown forge {pool.forge!r} (have {names})")
        return pool

    def _check_ceiling(self, pool: PoolConfig, index: int) -> None:
        ceiling = self.ceiling
        where = f"pools[{index}]"
        if pool.privileged and not ceiling.allow_privileged:
            raise ValueError(f"{where}.privileged: forbidden by ceiling.allow_privileged")
        if pool.docker_socket and not ceiling.allow_docker_socket:
            raise ValueError(f"{where}.docker_socket: forbidden by ceiling.allow_docker_socket")
        if pool.network == "host" and not ceiling.allow_host_network:
            raise ValueError(f"{where}.network: host network forbidden by ceiling")
        extra_caps = sorted(set(pool.cap_add) - set(ceiling.allowed_cap_add))
        if extra_caps:
            raise ValueError(f"{where}.cap_add: {extra_caps} not in ceiling.allowed_cap_add")
        if ceiling.max_cpus is not None and (pool.cpus is None or pool.cpus > ceiling.max_cpus):
            raise ValueError(f"{where}.cpus: must be set and <= ceiling.max_cpus")
        gpus = 0 if pool.gpu == "none" else (math.inf if pool.gpu == "all" else pool.gpu)
        if ceiling.max_gpus is not None and gpus > ceiling.max_gpus:
            raise ValueError(f"{where}.gpu: exceeds ceiling.max_gpus")

    def _check_swarm(self, pool: PoolConfig, index: int) -> None:
        """Refuse what a pool that may land on a Swarm endpoint asks and Swarm cannot do."""
        where = f"pools[{index}]"
        swarm = {h.name for h in self.docker_hosts if h.mode == "swarm"}
        on_swarm = bool(swarm & set(pool.hosts)) if pool.hosts else bool(swarm)
        if not on_swarm:
            if pool.constraints:
                raise ValueError(f"{where}.constraints: only for pools on mode: swarm hosts")
            return
        if pool.privileged:
            raise ValueError(f"{where}.privileged: Swarm services cannot run privileged")
        if pool.gpu == "all":
            raise ValueError(
                f"{where}.gpu: 'all' cannot be expressed on Swarm (it reserves a count of "
                "the nodes' generic resources); give a count"
            )
        if pool.network == "none":
            raise ValueError(f"{where}.network: Swarm has no 'none' network for services")

    # --- views used by the rest of the daemon ----------------------------------------------

    @property
    def default_cooldown_s(self) -> float:
        if self.idle_timeout is not None:
            return self.idle_timeout
        if self.runner_cooldown_minutes is not None:
            return self.runner_cooldown_minutes * 60.0
        return DEFAULT_COOLDOWN_S

    @property
    def journal_path(self) -> Path:
        return self.state_path or self.data_dir / "state.db"

    def forge(self, name: str) -> GitLabForgeConfig | GitHubForgeConfig:
        for forge in self.forges:
            if forge.name == name:
                return forge
        raise KeyError(name)

    def pool(self, name: str) -> PoolConfig:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def pool_specs(self) -> list[PoolSpec]:
        """The planner's view of every pool."""
        specs = []
        for pool in self.pools:
            forge = self.forge(pool.forge)
            specs.append(
                PoolSpec(
                    name=pool.name,
                    forge=pool.forge,
                    forge_kind=ForgeKind(forge.kind),
                    labels=frozenset(pool.labels),
                    platform=pool.platform,
                    run_untagged=pool.run_untagged,
                    max_runners=pool.max_runners,
                    min_idle=pool.min_idle,
                    max_idle=pool.max_idle,
                    cooldown_s=(
                        pool.cooldown_s if pool.cooldown_s is not None else self.default_cooldown_s
                    ),
                    ephemeral=pool.ephemeral,
                    start_timeout_s=pool.start_timeout_s,
                )
            )
        return specs

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with every secret replaced by ``**********``."""
        return self.model_dump(mode="json")


class ConfigError(Exception):
    """Invalid configuration; ``str()`` names each field and the reason."""


def env_names() -> list[str]:
    """Every environment variable the daemon reads (for .env.example and the README)."""
    yaml_only = {"forges", "pools", "docker_hosts", "ceiling"}
    return [name.upper() for name in Settings.model_fields if name not in yaml_only]


def _loc(parts: tuple[int | str, ...]) -> str:
    """``("pools", 0, "gpu")`` -> ``pools[0].gpu``; drops union discriminator tags."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"gitlab", "github"} and out.endswith("]"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "config"


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = _loc(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "value_error" and ":" in message and not item["loc"]:
            lines.append(f"invalid config: {message}")
            continue
        hint = ""
        if item["loc"] and isinstance(item["loc"][0], str) and len(item["loc"]) == 1:
            hint = f" (env {item['loc'][0].upper()})"
        value = item.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f", got {value!r}"
        if (item["loc"] and "token" in str(item["loc"][-1])) or "secret" in loc:
            shown = ""
        lines.append(f"invalid config: {loc}{hint}: {message}{shown}")
    return "\n".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from env (+ YAML). Raises :class:`ConfigError` when invalid."""
    path = config_file or (
        Path(os.environ["CONFIG_FILE"]) if os.environ.get("CONFIG_FILE") else None
    )
    cls: type[Settings] = Settings
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"invalid config: config_file: {path} does not exist")
        cls = type(
            "Settings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": path}}
        )
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except ValueError as exc:  # YAML syntax errors and the like
        raise ConfigError(f"invalid config: {exc}") from exc
