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

Every problem is a :class:`ConfigError` with one line per problem naming the field and its
env var, and never a value that could be a secret (:mod:`orchestrator.config_errors`).
Input is bounded before it is parsed (:mod:`orchestrator.config_yaml`, ``MAX_ENV_BYTES``),
numbers must be finite and within floors and ceilings, and every pool is checked against
the operator's ceiling (:mod:`orchestrator.ceiling`).

Nothing here does I/O at import time; :func:`load_settings` is called once by the CLI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from orchestrator import ceiling as ceiling_rules
from orchestrator.config_errors import ConfigError, describe, render, shown_all, translate
from orchestrator.config_yaml import MAX_DEPTH, bracket_depth, read_yaml
from orchestrator.logging import redact_text
from orchestrator.models import ForgeKind, PoolSpec

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DEFAULT_COOLDOWN_S = 300.0
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
#: Largest value accepted from one environment variable (JSON for FORGES/POOLS included).
MAX_ENV_BYTES = 64 * 1024
MASKED = "**********"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Names the runtime sets itself in every runner container; a pool may not override them.
_RESERVED_ENV = frozenset(
    {"RUNNER_CREDENTIAL_ENV", "RUNNER_CREDENTIAL_FILE", "RUNNER_CREDENTIAL_STDIN"}
)

__all__ = ["ConfigError", "Settings", "env_names", "load_settings"]

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    """Accept ``a,b`` from env vars as well as real lists from YAML."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _http_url(value: str, example: str) -> str:
    """An http(s) URL with a host; the message never repeats the value (it may be a token)."""
    parts = urlsplit(value) if re.match(r"^https?://", value) else None
    try:
        host = parts.hostname if parts else None
        if parts is not None:
            parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        host = None
    if not host or re.search(r"\s", value):
        raise ValueError(f"must be an http(s) URL like {example}")
    return value


def _docker_url(value: str) -> str:
    """A Docker endpoint the SDK can use: unix/npipe with a path, tcp/ssh/http(s) with a host."""
    match = re.match(r"^(unix|npipe|tcp|ssh|http|https)://(.*)$", value)
    if not match or re.search(r"\s", value):
        raise ValueError("must start with unix://, tcp://, ssh:// or http(s)://")
    scheme, rest = match.groups()
    if scheme in {"unix", "npipe"}:
        if not rest.startswith("/"):
            raise ValueError(
                f"{scheme}:// needs an absolute socket path (unix:///var/run/docker.sock)"
            )
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        host = None
    if not host:
        raise ValueError(f"{scheme}:// needs a host (tcp://host:2376, ssh://user@host)")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


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
    group_refresh_s: float = Field(300.0, ge=1, le=DAY_S)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _http_url(value, "https://gitlab.example.com")
        return value.rstrip("/").removesuffix("/api/v4")

    def runner_scopes(self) -> list[str]:
        """Where runners are registered when each goes where its job is: more than one
        means a runner cannot serve every job (see :func:`_several_scopes_problem`)."""
        runner_type = self.runner_type or (
            "instance_type"
            if self.instance
            else "group_type"
            if self.runner_group_id is not None or (self.groups and self.runner_project_id is None)
            else "project_type"
        )
        if runner_type == "group_type" and self.runner_group_id is None:
            return list(self.groups)
        if runner_type == "project_type" and self.runner_project_id is None:
            return list(self.projects) + [f"projects of {g}" for g in self.groups]
        return [runner_type]


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
    repo_refresh_s: float = Field(300.0, ge=1, le=DAY_S)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _http_url(value, "https://api.github.com or https://ghes.example.com/api/v3")

    @field_validator("web_url")
    @classmethod
    def _web(cls, value: str) -> str:
        return _http_url(value, "https://github.com") if value else value

    @field_validator("repos")
    @classmethod
    def _repos(cls, value: list[str]) -> list[str]:
        for index, repo in enumerate(value):
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
                raise ValueError(f"entry {index + 1} is not owner/repo")
        return value

    @field_validator("orgs")
    @classmethod
    def _orgs(cls, value: list[str]) -> list[str]:
        for index, org in enumerate(value):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}", org):
                raise ValueError(f"entry {index + 1} is not an organisation name")
        return value

    def runner_scopes(self) -> list[str]:
        """Where runners are registered: every org, and every repository no configured
        org holds (a repo-level runner serves only its repository)."""
        orgs = {o.lower() for o in self.orgs}
        return list(self.orgs) + [r for r in self.repos if r.split("/")[0].lower() not in orgs]

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


def _several_scopes_problem(
    index: int,
    pool: PoolConfig,
    forges: list[GitLabForgeConfig | GitHubForgeConfig],
    *,
    from_env: bool,
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
        field = "min_idle (env MIN_RUNNERS)" if from_env else "min_idle"
        out.append(
            f"pools[{index}].{field}: must be 0: {where}; a warm runner can serve "
            f"only one of them ({fix})"
        )
    if not pool.ephemeral:
        field = "ephemeral (env RUNNER_EPHEMERAL)" if from_env else "ephemeral"
        out.append(
            f"pools[{index}].{field}: must be true: {where}; a reusable runner "
            f"serves only the scope of its first job ({fix})"
        )
    return out


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
    cpus: float | None = Field(None, gt=0, le=1024)
    memory: str | None = "4g"
    """Docker notation (``512m``, ``4g``); a limit is always set unless ``null``."""
    pids_limit: int = Field(4096, ge=16, le=4_194_304)
    min_idle: int = Field(0, ge=0, le=10_000)
    """Runners kept warm with no job."""
    max_idle: int | None = Field(None, ge=0, le=10_000)
    """Idle runners beyond this are retired without waiting for the cooldown."""
    max_runners: int = Field(10, ge=0, le=10_000)
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
    constraints: list[str] = []
    """Swarm placement constraints added to this pool's services (``node.labels.ssd==true``);
    only for pools placed on ``mode: swarm`` endpoints."""

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+\s*(==|!=)\s*\S+", item):
                # The value is not echoed: config errors never show input (it may be a secret).
                raise ValueError("not a constraint like node.labels.ssd==true")
        return value

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
        return _docker_url(value)


class Ceiling(_Model):
    """What pools may ask for at most. The operator's guard rail over pool authors; the
    rules are in :mod:`orchestrator.ceiling` and the table in docs/security.md."""

    allow_privileged: bool = False
    allow_docker_socket: bool = False
    """Also covers host binds at or around an engine socket and widening executor flags."""
    allow_host_network: bool = False
    allowed_networks: list[str] = []
    """Docker networks (or ``container:<name>``) a pool may join besides its own bridge."""
    allowed_host_paths: list[str] = []
    """Host directories pools may bind-mount (and what is below them)."""
    allowed_cap_add: list[str] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]
    allow_root: bool = True
    """False: every pool must set a non-root ``user``."""
    require_read_only: bool = False
    """True: every pool must set ``read_only: true``."""
    max_cpus: float | None = Field(None, gt=0)
    max_gpus: int | None = Field(None, ge=0)

    @field_validator("allowed_host_paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for index, path in enumerate(value):
            if not path.startswith("/"):
                raise ValueError(f"entry {index + 1} is not an absolute path")
        return value


class Settings(BaseSettings):
    """The whole configuration. Field names are the env var names in lower case."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )

    #: The checked YAML file's content (see :func:`load_settings`), lowest precedence.
    yaml_data: ClassVar[dict[str, Any] | None] = None

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
    gitlab_requests_per_minute: int = Field(300, ge=1, le=100_000)
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
    github_requests_per_minute: int = Field(600, ge=1, le=100_000)
    """GitHub request pace per minute (its secondary limit is 900 per endpoint)."""
    min_runners: int = Field(0, ge=0, le=10_000)
    """Idle runners kept warm in the default pool (at most MAX_RUNNERS)."""
    max_runners: int = Field(10, ge=0, le=10_000)
    """Global ceiling on runners (all pools); also the default pool's max."""
    max_idle_runners: int | None = Field(None, ge=0, le=10_000)
    """Idle runners beyond this are retired at once (default pool)."""
    runner_cooldown_minutes: float | None = Field(None, ge=0, le=WEEK_S / 60)
    """Idle minutes before a runner is retired, at most a week (IDLE_TIMEOUT wins if both
    are set)."""
    idle_timeout: float | None = Field(None, ge=0, le=WEEK_S)
    """Idle seconds before a runner is retired (at most a week)."""
    poll_interval: float = Field(15.0, ge=1, le=3600)
    """Longest wait between two polls of a forge and between reconciles, 1 to 3600. Each
    forge is polled faster when its request budget allows (down to 1.5 s; see
    docs/architecture.md), and at this interval while its webhooks arrive."""
    forge_call_timeout: float = Field(30.0, gt=0, le=600, allow_inf_nan=False)
    """Overall deadline of one forge call (a whole job poll); a slower forge is paused."""
    forge_retry_after_max: float = Field(900.0, ge=1, le=86400, allow_inf_nan=False)
    """Longest pause a forge's Retry-After can impose (longer asks are clamped); also the
    longest wait the providers accept from a forge (one clamp for both layers)."""
    gitlab_graphql: bool = True
    """Poll GitLab projects through GraphQL (up to 100 per request), REST for whatever it
    cannot vouch for; a refused GraphQL endpoint falls back to REST for an hour."""
    max_jobs_per_scope: int = Field(1000, ge=1, le=100_000)
    """Waiting jobs read per project/repository per poll; more are counted, not read."""

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
    runner_cpus: float | None = Field(None, gt=0, le=1024)
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
    """Address the HTTP API binds to (0.0.0.0: every interface; empty is refused)."""
    http_allowed_hosts: CommaList = []
    """Host header values the API answers (DNS rebinding protection; * = any). Empty: loopback
    and HTTP_HOST, or any when HTTP_HOST is 0.0.0.0/::."""
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
    shutdown_timeout: float = Field(30.0, gt=0, le=3600)
    """Seconds to wait for the in-flight reconcile (and drain) on shutdown (at most 3600)."""
    docker_host: str = "unix:///var/run/docker.sock"
    """Docker endpoint when DOCKER_HOSTS are not configured in YAML."""
    credential_delivery: Literal["stdin", "file", "env"] = "stdin"
    """How the runner credential reaches the container: stdin (written to it through an attach
    made before start; Swarm endpoints use file), file (copied in), env (shows in docker
    inspect). stdin and file keep it out of docker inspect; see docs/runner-contract.md."""
    network_name: str = Field("", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$")
    """Isolated bridge network for runners; default runner-orchestrator-<instance id>
    (never host, bridge or none)."""
    max_webhook_bytes: int = Field(1_048_576, ge=1024, le=64 * 1024 * 1024)
    """Largest webhook body accepted, 1 KiB to 64 MiB (bigger: 413)."""
    gc_interval: float = Field(300.0, ge=1, le=DAY_S)
    """Seconds between orphan sweeps (forge registrations without containers), at most a day."""

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
        "http_allowed_hosts",
        mode="before",
    )(_split_commas)

    @field_validator("http_host")
    @classmethod
    def _bind_address(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty: it would bind every interface; say 0.0.0.0 if meant")
        return value.strip()

    @field_validator("github_api_url")
    @classmethod
    def _github_api_url(cls, value: str) -> str:
        return _http_url(value, "https://api.github.com or https://ghes.example.com/api/v3")

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        return _docker_url(value)

    @field_validator("network_name")
    @classmethod
    def _network_name(cls, value: str) -> str:
        if value in {"host", "bridge", "none", "default"}:
            raise ValueError(
                "must name a user-defined bridge network, not Docker's host, bridge or none "
                "(a pool's network: host needs ceiling.allow_host_network)"
            )
        return value

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
        data = getattr(settings_cls, "yaml_data", None)
        if data is not None:
            sources.append(_DataSource(settings_cls, data))
        return tuple(sources)

    # --- derived structure -------------------------------------------------------------------

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        """Derive forges and pools from the env when the file has none, then check what
        needs the whole picture. Every problem found is reported, one line each."""
        problems: list[str] = []
        if self.min_runners > self.max_runners:
            raise ValueError(
                f"min_runners (env MIN_RUNNERS): {self.min_runners} is more than "
                f"MAX_RUNNERS ({self.max_runners})"
            )
        forges = list(self.forges) or self._forges_from_env()
        names = [f.name for f in forges]
        if len(set(names)) != len(names):
            problems.append(f"forges: duplicate forge names {shown_all(names)}")
        forges = [self._with_env_token(f) for f in forges]
        for index, forge in enumerate(forges):
            if forge.token is None or not forge.token.get_secret_value():
                env = "GITLAB_TOKEN" if forge.kind == "gitlab" else "GITHUB_TOKEN"
                problems.append(f"forges[{index}].token: missing (set it or {env})")
        pools = list(self.pools) or self._pools_from_env(forges)
        pool_names = [p.name for p in pools]
        if len(set(pool_names)) != len(pool_names):
            problems.append(f"pools: duplicate pool names {shown_all(pool_names)}")
        host_names = [h.name for h in self.docker_hosts]
        if len(set(host_names)) != len(host_names):
            problems.append(f"docker_hosts: duplicate docker host names {shown_all(host_names)}")
        resolved = []
        for index, given in enumerate(pools):
            pool, problem = self._with_forge(given, forges, index)
            problems += [problem] if problem else []
            resolved.append(pool)
            problems += ceiling_rules.check_pool(index, pool, self.ceiling)
            problems += _several_scopes_problem(index, pool, forges, from_env=not self.pools)
            for h, host in enumerate(pool.hosts):
                if host not in host_names:
                    problems.append(
                        f"pools[{index}].hosts[{h}]: no docker host of that name "
                        f"(have {shown_all(host_names)})"
                    )
            problems += self._check_swarm(pool, index)
        if self.management_enabled and not (
            self.management_token and self.management_token.get_secret_value()
        ):
            problems.append(
                "management_token: MANAGEMENT_ENABLED is true but MANAGEMENT_TOKEN is empty"
            )
        if problems:
            raise ValueError("\n".join(problems))
        object.__setattr__(self, "forges", forges)
        object.__setattr__(self, "pools", resolved)
        return self

    def _forges_from_env(self) -> list[GitLabForgeConfig | GitHubForgeConfig]:
        forges: list[GitLabForgeConfig | GitHubForgeConfig] = []
        if self.gitlab_url or self.gitlab_token:
            if not self.gitlab_url:
                raise ValueError(
                    "gitlab_url (env GITLAB_URL): GITLAB_TOKEN is set but GITLAB_URL is not"
                )
            try:
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
            except ValidationError as exc:
                raise ValueError("\n".join(translate(exc, _GITLAB_ENV, "GITLAB_URL"))) from None
        if self.github_token or self.github_org or self.github_repo:
            if not (self.github_org or self.github_repo):
                raise ValueError(
                    "github_repo (env GITHUB_REPO): GITHUB_TOKEN is set but neither "
                    "GITHUB_ORG nor GITHUB_REPO is"
                )
            try:
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
            except ValidationError as exc:
                raise ValueError("\n".join(translate(exc, _GITHUB_ENV, "GITHUB_API_URL"))) from None
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
        try:
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
        except ValidationError as exc:
            raise ValueError("\n".join(translate(exc, _POOL_ENV, "RUNNER_IMAGE"))) from None

    @staticmethod
    def _with_forge(
        pool: PoolConfig, forges: list[GitLabForgeConfig | GitHubForgeConfig], index: int
    ) -> tuple[PoolConfig, str]:
        names = [f.name for f in forges]
        if not pool.forge:
            if len(forges) != 1:
                return pool, (
                    f"pools[{index}].forge: required when {len(forges)} forges are configured"
                )
            return pool.model_copy(update={"forge": names[0]}), ""
        if pool.forge not in names:
            return pool, (f"pools[{index}].forge: no forge of that name (have {shown_all(names)})")
        return pool, ""

    def _check_swarm(self, pool: PoolConfig, index: int) -> list[str]:
        """What a pool that may land on a Swarm endpoint asks and Swarm cannot do."""
        where = f"pools[{index}]"
        swarm = {h.name for h in self.docker_hosts if h.mode == "swarm"}
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
                    scope_bound=len(forge.runner_scopes()) > 1,
                )
            )
        return specs

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with every secret replaced by ``**********``:
        secret fields, every pool ``env`` value, the user info of every URL, and anything
        shaped like a forge token or equal to a configured secret."""
        data: dict[str, Any] = self.model_dump(mode="json")
        for pool in data["pools"]:
            pool["env"] = dict.fromkeys(pool["env"], MASKED)
        masked: dict[str, Any] = _mask_tree(data)
        return masked


def _mask_url(value: str) -> str:
    """``https://user:pw@host/x`` -> ``https://**********@host/x``."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@\s]*@", rf"\1{MASKED}@", value, flags=re.I)


def _mask_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_tree(v) for v in value]
    if isinstance(value, str):
        return redact_text(_mask_url(value)).replace("**redacted**", MASKED)
    return value


class _DataSource(PydanticBaseSettingsSource):
    """Settings from the already checked YAML mapping (lowest precedence: env wins)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = {k.lower(): v for k, v in data.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


#: Where the env-derived forge and pool fields come from, for error messages.
_GITLAB_ENV = {
    "url": "GITLAB_URL",
    "token": "GITLAB_TOKEN",
    "projects": "GITLAB_PROJECTS",
    "groups": "GITLAB_GROUPS",
    "instance": "GITLAB_INSTANCE",
    "webhook_secret": "GITLAB_WEBHOOK_SECRET",
    "requests_per_minute": "GITLAB_REQUESTS_PER_MINUTE",
}
_GITHUB_ENV = {
    "token": "GITHUB_TOKEN",
    "api_url": "GITHUB_API_URL",
    "web_url": "GITHUB_API_URL",
    "repos": "GITHUB_REPO",
    "orgs": "GITHUB_ORG",
    "webhook_secret": "GITHUB_WEBHOOK_SECRET",
    "runner_group_id": "GITHUB_RUNNER_GROUP_ID",
    "requests_per_minute": "GITHUB_REQUESTS_PER_MINUTE",
}
_POOL_ENV = {
    "labels": "RUNNER_LABELS",
    "run_untagged": "RUNNER_RUN_UNTAGGED",
    "image": "RUNNER_IMAGE",
    "platform": "RUNNER_PLATFORM",
    "memory": "RUNNER_MEMORY",
    "cpus": "RUNNER_CPUS",
    "min_idle": "MIN_RUNNERS",
    "max_idle": "MAX_IDLE_RUNNERS",
    "max_runners": "MAX_RUNNERS",
    "ephemeral": "RUNNER_EPHEMERAL",
    "executor": "RUNNER_EXECUTOR",
}
_YAML_ONLY = frozenset({"forges", "pools", "docker_hosts", "ceiling"})


def env_names() -> list[str]:
    """Every environment variable the daemon reads (for .env.example and the README)."""
    return [name.upper() for name in Settings.model_fields if name not in _YAML_ONLY]


def _env_problems(environ: dict[str, str]) -> list[str]:
    """Bounds on raw env values, checked before any parsing (JSON for FORGES/POOLS...)."""
    problems = []
    for key, value in environ.items():
        name = key.lower()
        if name not in Settings.model_fields:
            continue
        if len(value) > MAX_ENV_BYTES:
            problems.append(f"{name} (env {key.upper()}): longer than {MAX_ENV_BYTES // 1024} KiB")
        elif name in _YAML_ONLY and bracket_depth(value) > MAX_DEPTH:
            problems.append(f"{name} (env {key.upper()}): nested more than {MAX_DEPTH} levels deep")
    return problems


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from env (+ YAML). Raises :class:`ConfigError` when invalid:
    one line per problem, naming the field and its env var, never repeating a secret."""
    problems = _env_problems(dict(os.environ))
    if problems:
        raise ConfigError(render(problems))
    path = config_file or (
        Path(os.environ["CONFIG_FILE"]) if os.environ.get("CONFIG_FILE") else None
    )
    cls: type[Settings] = Settings
    if path is not None:
        data = read_yaml(path)
        cls = type("Settings", (Settings,), {"yaml_data": data})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(render(describe(exc, env_names()))) from None
    except RecursionError:
        raise ConfigError(render([f"config: nested more than {MAX_DEPTH} levels deep"])) from None
    except ValueError as exc:  # pydantic-settings: an env value that is not valid JSON
        raise ConfigError(render([_settings_error(exc)])) from None


def _settings_error(exc: ValueError) -> str:
    """pydantic-settings names the field in its message ('error parsing value for field
    "pools" from source ...'); keep that, never the value."""
    match = re.search(r'field "(\w+)"', str(exc))
    if match:
        name = match.group(1)
        return f"{name} (env {name.upper()}): not valid JSON"
    return "config: could not be read"
