"""The environment-only settings and what they become.

The one-forge case keeps the names admins know from earlier runner coordinators
(``GITLAB_URL``, ``GITHUB_TOKEN``, ``MIN_RUNNERS``...), and ``RUNNER_*`` describe the
default pool. When the YAML file names no forges or pools, :class:`EnvSettings` derives
them: one forge per token given, one default pool per forge. An error in a derived forge
or pool names the env var the admin set (``GITLAB_URL``), not the model field it was
copied into (``forges[0].url``); :data:`GITLAB_ENV`, :data:`GITHUB_ENV` and
:data:`POOL_ENV` say which is which.

:class:`orchestrator.config.Settings` extends :class:`EnvSettings` with the daemon's own
settings and the YAML-only structure; fields keep their order (these come first), which
is the order of ``.env.example`` and the README table.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.config_checks import WEEK_S, CommaList, Cpus, RequestsPerMinute, RunnerCount
from orchestrator.config_errors import translate
from orchestrator.config_forges import AnyForge, GitHubApiUrl, GitHubForgeConfig, GitLabForgeConfig
from orchestrator.config_pools import PoolConfig

_M = TypeVar("_M", bound=BaseModel)

#: Where the env-derived forge and pool fields come from, for error messages.
GITLAB_ENV = {
    "url": "GITLAB_URL",
    "token": "GITLAB_TOKEN",
    "projects": "GITLAB_PROJECTS",
    "groups": "GITLAB_GROUPS",
    "instance": "GITLAB_INSTANCE",
    "webhook_secret": "GITLAB_WEBHOOK_SECRET",
    "requests_per_minute": "GITLAB_REQUESTS_PER_MINUTE",
}
GITHUB_ENV = {
    "token": "GITHUB_TOKEN",
    "app_id": "GITHUB_APP_ID",
    "app_installation_id": "GITHUB_APP_INSTALLATION_ID",
    "app_private_key_file": "GITHUB_APP_PRIVATE_KEY_FILE",
    "api_url": "GITHUB_API_URL",
    "web_url": "GITHUB_API_URL",
    "repos": "GITHUB_REPO",
    "orgs": "GITHUB_ORG",
    "webhook_secret": "GITHUB_WEBHOOK_SECRET",
    "runner_group_id": "GITHUB_RUNNER_GROUP_ID",
    "requests_per_minute": "GITHUB_REQUESTS_PER_MINUTE",
}
POOL_ENV = {
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


def pool_field(name: str, *, from_env: bool) -> str:
    """A pool field as an error names it: ``min_idle (env MIN_RUNNERS)`` for the pool
    derived from the environment, ``min_idle`` for one from the file."""
    return f"{name} (env {POOL_ENV[name]})" if from_env else name


def _from_env(model: type[_M], env_of: dict[str, str], fallback: str, **values: Any) -> _M:
    """``model(**values)``; its errors renamed to the env vars the values came from."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise ValueError("\n".join(translate(exc, env_of, fallback))) from None


class EnvSettings(BaseSettings):
    """The settings read only from the environment (or the same top-level YAML keys).
    Field names are the env var names in lower case."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
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
    gitlab_requests_per_minute: RequestsPerMinute = 300
    """GitLab request budget per minute (GitLab's jobs API default limit is 600)."""
    github_token: SecretStr | None = None
    """GitHub token; with GITHUB_ORG or GITHUB_REPO defines the forge ``github``."""
    github_app_id: str = ""
    """GitHub App id to authenticate as instead of GITHUB_TOKEN (recommended for orgs)."""
    github_app_installation_id: int | None = Field(None, ge=1)
    """The GitHub App's installation id (in the installation's settings URL)."""
    github_app_private_key_file: str = ""
    """Path to the GitHub App's private key (PEM), e.g. a Compose secret."""
    github_org: CommaList = []
    """Comma-separated organisations (runners registered at org level)."""
    github_repo: CommaList = []
    """Comma-separated owner/repo list (runners registered at repo level)."""
    github_api_url: GitHubApiUrl = "https://api.github.com"
    """GitHub API base; GHES: https://host/api/v3."""
    github_webhook_secret: SecretStr | None = None
    """HMAC secret for X-Hub-Signature-256 on POST /webhooks/github."""
    github_runner_group_id: int = Field(1, ge=1)
    """Runner group for JIT runners (1 = Default)."""
    github_requests_per_minute: RequestsPerMinute = 600
    """GitHub request pace per minute (its secondary limit is 900 per endpoint)."""
    min_runners: RunnerCount = 0
    """Idle runners kept warm in the default pool (at most MAX_RUNNERS)."""
    max_runners: RunnerCount = 10
    """Global ceiling on runners (all pools); also the default pool's max."""
    max_idle_runners: RunnerCount | None = None
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
    runner_cpus: Cpus | None = None
    """CPU limit of default-pool containers."""

    @model_validator(mode="after")
    def _sizes(self) -> EnvSettings:
        if self.min_runners > self.max_runners:
            raise ValueError(
                f"min_runners (env MIN_RUNNERS): {self.min_runners} is more than "
                f"MAX_RUNNERS ({self.max_runners})"
            )
        return self

    def _forges_from_env(self) -> list[AnyForge]:
        forges: list[AnyForge] = []
        if self.gitlab_url or self.gitlab_token:
            if not self.gitlab_url:
                raise ValueError(
                    "gitlab_url (env GITLAB_URL): GITLAB_TOKEN is set but GITLAB_URL is not"
                )
            forges.append(
                _from_env(
                    GitLabForgeConfig,
                    GITLAB_ENV,
                    "GITLAB_URL",
                    url=self.gitlab_url,
                    token=self.gitlab_token,
                    projects=self.gitlab_projects,
                    groups=self.gitlab_groups,
                    instance=self.gitlab_instance,
                    webhook_secret=self.gitlab_webhook_secret,
                    requests_per_minute=self.gitlab_requests_per_minute,
                )
            )
        if self.github_token or self.github_app_id or self.github_org or self.github_repo:
            if not (self.github_org or self.github_repo):
                given = "GITHUB_TOKEN" if self.github_token else "GITHUB_APP_ID"
                raise ValueError(
                    f"github_repo (env GITHUB_REPO): {given} is set but neither "
                    "GITHUB_ORG nor GITHUB_REPO is"
                )
            forges.append(
                _from_env(
                    GitHubForgeConfig,
                    GITHUB_ENV,
                    "GITHUB_API_URL",
                    token=self.github_token,
                    app_id=self.github_app_id,
                    app_installation_id=self.github_app_installation_id,
                    app_private_key_file=self.github_app_private_key_file,
                    api_url=self.github_api_url,
                    repos=self.github_repo,
                    orgs=self.github_org,
                    webhook_secret=self.github_webhook_secret,
                    runner_group_id=self.github_runner_group_id,
                    requests_per_minute=self.github_requests_per_minute,
                )
            )
        return forges

    def _with_env_token(self, forge: AnyForge) -> AnyForge:
        if forge.token is not None or (isinstance(forge, GitHubForgeConfig) and forge.uses_app()):
            return forge
        token = self.gitlab_token if forge.kind == "gitlab" else self.github_token
        return forge.model_copy(update={"token": token})

    def _pools_from_env(self, forges: list[AnyForge]) -> list[PoolConfig]:
        return [
            _from_env(
                PoolConfig,
                POOL_ENV,
                "RUNNER_IMAGE",
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
