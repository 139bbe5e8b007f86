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

The parts, each in its own module: the checks every section shares
(:mod:`orchestrator.config_checks`), the forge sections (:mod:`orchestrator.config_forges`),
the pool, Docker host and ceiling sections (:mod:`orchestrator.config_pools`), the
environment-only settings and the forge and default pool derived from them
(:mod:`orchestrator.config_env`), and the checks of one pool against the rest
(:mod:`orchestrator.config_pool_checks`). This module puts them together in
:class:`Settings` and loads it; the names the rest of the daemon uses are importable from
here.

Nothing here does I/O at import time; :func:`load_settings` is called once by the CLI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from orchestrator.config_checks import DAY_S, CommaList, DockerUrl, duplicates, is_empty
from orchestrator.config_env import EnvSettings
from orchestrator.config_errors import ConfigError, describe, render
from orchestrator.config_forges import AnyForge, ForgeConfig, GitHubForgeConfig, GitLabForgeConfig
from orchestrator.config_pool_checks import pool_problems
from orchestrator.config_pools import Ceiling, DockerHostConfig, PoolConfig
from orchestrator.config_yaml import MAX_DEPTH, bracket_depth, read_yaml
from orchestrator.logging import redact_text
from orchestrator.models import ForgeKind, PoolSpec

DEFAULT_COOLDOWN_S = 300.0
#: Largest value accepted from one environment variable (JSON for FORGES/POOLS included).
MAX_ENV_BYTES = 64 * 1024
MASKED = "**********"

__all__ = [
    "Ceiling",
    "ConfigError",
    "DockerHostConfig",
    "GitHubForgeConfig",
    "GitLabForgeConfig",
    "PoolConfig",
    "Settings",
    "env_names",
    "load_settings",
]


class Settings(EnvSettings):
    """The whole configuration. Field names are the env var names in lower case."""

    # The environment-only fields (the one-forge case, the default pool) come first, from
    # EnvSettings; then these. That order is the order of .env.example and the README.

    #: The checked YAML file's content (see :func:`load_settings`), lowest precedence.
    yaml_data: ClassVar[dict[str, Any] | None] = None

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
    docker_host: DockerUrl = "unix:///var/run/docker.sock"
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

    @field_validator("http_host")
    @classmethod
    def _bind_address(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty: it would bind every interface; say 0.0.0.0 if meant")
        return value.strip()

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
        forges = list(self.forges) or self._forges_from_env()
        problems = duplicates("forges", "forge", (f.name for f in forges))
        forges = [self._with_env_token(f) for f in forges]
        for index, forge in enumerate(forges):
            if isinstance(forge, GitHubForgeConfig) and forge.uses_app():
                if not is_empty(forge.token):
                    problems.append(
                        f"forges[{index}].token: set a token or a GitHub App (app_id), not both"
                    )
            elif is_empty(forge.token):
                env = "GITLAB_TOKEN" if forge.kind == "gitlab" else "GITHUB_TOKEN"
                problems.append(f"forges[{index}].token: missing (set it or {env})")
        pools = list(self.pools) or self._pools_from_env(forges)
        problems += duplicates("pools", "pool", (p.name for p in pools))
        problems += duplicates("docker_hosts", "docker host", (h.name for h in self.docker_hosts))
        resolved = []
        for index, given in enumerate(pools):
            pool, found = pool_problems(
                index, given, forges, self.docker_hosts, self.ceiling, from_env=not self.pools
            )
            problems += found
            resolved.append(pool)
        if self.management_enabled and is_empty(self.management_token):
            problems.append(
                "management_token: MANAGEMENT_ENABLED is true but MANAGEMENT_TOKEN is empty"
            )
        if problems:
            raise ValueError("\n".join(problems))
        object.__setattr__(self, "forges", forges)
        object.__setattr__(self, "pools", resolved)
        return self

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

    def forge(self, name: str) -> AnyForge:
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
