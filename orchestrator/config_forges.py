"""The forge sections of the configuration: one GitLab or GitHub each, what it watches
and where its runners are registered (:meth:`~GitLabForgeConfig.runner_scopes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from orchestrator.config_checks import (
    DAY_S,
    NAME_PATTERN,
    ConfigModel,
    RequestsPerMinute,
    entries,
    http_url,
    http_url_like,
    matching,
)

#: A GitHub API base URL (github.com or GHES), as a forge field and as ``GITHUB_API_URL``.
GitHubApiUrl = Annotated[
    str, http_url_like("https://api.github.com or https://ghes.example.com/api/v3")
]


class GitLabForgeConfig(ConfigModel):
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
    requests_per_minute: RequestsPerMinute = 300
    """Request budget. GitLab limits ``GET /projects/:id/jobs`` to 600/min/user by default."""
    include_created: bool = False
    """Also treat jobs in status ``created`` as demand (pre-scale)."""
    webhook_secret: SecretStr | None = None
    """``X-Gitlab-Token`` expected on ``POST /webhooks/gitlab``. Empty: webhooks refused."""
    group_refresh_s: float = Field(300.0, ge=1, le=DAY_S)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        http_url(value, "https://gitlab.example.com")
        return value.rstrip("/").removesuffix("/api/v4")

    def runner_scopes(self) -> list[str]:
        """Where runners are registered when each goes where its job is: more than one
        means a runner cannot serve every job (see
        :func:`orchestrator.config_pool_checks.several_scopes_problems`)."""
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


class GitHubForgeConfig(ConfigModel):
    """One GitHub (or GitHub Enterprise Server) and what to watch on it."""

    kind: Literal["github"] = "github"
    name: str = Field("github", pattern=NAME_PATTERN)
    token: SecretStr | None = None
    """PAT/App token with repo administration (repos) or org self-hosted runners (orgs).
    Defaults to ``GITHUB_TOKEN``. Not needed when ``app_id`` is set."""
    app_id: str = Field("", pattern=r"^[A-Za-z0-9.]*$")
    """GitHub App id (or client id) to authenticate as, instead of a token; with
    ``app_installation_id`` and ``app_private_key_file`` (or ``app_private_key``)."""
    app_installation_id: int | None = Field(None, ge=1)
    """The App's installation on the watched org or repositories."""
    app_private_key_file: str = ""
    """Path to the App's private key (PEM), read at start-up."""
    app_private_key: SecretStr | None = None
    """The App's private key (PEM) inline; ``app_private_key_file`` is preferred."""
    api_url: GitHubApiUrl = "https://api.github.com"
    """GHES: ``https://host/api/v3``."""
    web_url: str = ""
    """Where runners register (``config.sh --url``); derived from ``api_url`` when empty."""
    repos: Annotated[
        list[str], entries(matching(r"[\w.-]+/[\w.-]+"), "entry {n} is not owner/repo")
    ] = []
    orgs: Annotated[
        list[str],
        entries(
            matching(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"), "entry {n} is not an organisation name"
        ),
    ] = []
    runner_group_id: int = Field(1, ge=1)
    webhook_secret: SecretStr | None = None
    """HMAC secret for ``X-Hub-Signature-256`` on ``POST /webhooks/github``."""
    low_rate_limit: int = Field(500, ge=0)
    """Below this many remaining requests the poll interval stretches."""
    requests_per_minute: RequestsPerMinute = 600
    """Pace of GitHub polling (its secondary limit is 900 points/min per endpoint)."""
    repo_refresh_s: float = Field(300.0, ge=1, le=DAY_S)

    @field_validator("web_url")
    @classmethod
    def _web(cls, value: str) -> str:
        return http_url(value, "https://github.com") if value else value

    def runner_scopes(self) -> list[str]:
        """Where runners are registered: every org, and every repository no configured
        org holds (a repo-level runner serves only its repository)."""
        orgs = {o.lower() for o in self.orgs}
        return list(self.orgs) + [r for r in self.repos if r.split("/")[0].lower() not in orgs]

    @model_validator(mode="after")
    def _app(self) -> GitHubForgeConfig:
        """App fields come together; the key file is read (and the key parsed) now, so a
        wrong path or a damaged key is a configuration error naming its field."""
        given = [self.app_id, self.app_installation_id, self.app_private_key_file]
        if not any(given) and self.app_private_key is None:
            return self
        if not self.app_id or self.app_installation_id is None:
            raise ValueError(
                "app_id and app_installation_id: a GitHub App needs both (and its private key)"
            )
        if self.app_private_key_file and self.app_private_key is not None:
            raise ValueError(
                "app_private_key: set app_private_key_file or app_private_key, not both"
            )
        if self.app_private_key_file:
            try:
                pem = Path(self.app_private_key_file).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"app_private_key_file: cannot read {self.app_private_key_file}: "
                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
                ) from None
            object.__setattr__(self, "app_private_key", SecretStr(pem))
        if self.app_private_key is None:
            raise ValueError("app_private_key_file: the GitHub App's private key is missing")
        check_private_key(self.app_private_key.get_secret_value())
        return self

    def uses_app(self) -> bool:
        return bool(self.app_id)

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


def check_private_key(pem: str) -> None:
    """Parse the PEM (cryptography is imported only when an App is configured); the
    error never repeats the key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "app_private_key: not an unencrypted PEM private key "
            f"({type(exc).__name__}; GitHub's download is one)"
        ) from None


#: Either forge, as the rest of the daemon handles them.
AnyForge = GitLabForgeConfig | GitHubForgeConfig
#: A ``forges:`` entry in YAML, told apart by ``kind``.
ForgeConfig = Annotated[AnyForge, Field(discriminator="kind")]
