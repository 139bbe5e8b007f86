"""The GitHub simulator's data: repositories, workflow runs and jobs, runners, tokens."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

API = "/api/v3"
REGISTRATION_TOKEN_TTL_S = 3600


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Repo:
    id: int
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclasses.dataclass
class Run:
    id: int
    repo: str
    created_at: float
    updated_at: float
    job_ids: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Job:
    id: int
    run_id: int
    repo: str
    labels: list[str]
    duration: float
    name: str
    created_at: float
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    environment: str | None = None  # a deployment job: "waiting" until approved


@dataclasses.dataclass
class Runner:
    id: int
    name: str
    labels: list[str]
    scope_kind: str  # "repo" | "org"
    scope: str  # owner/repo or org
    ephemeral: bool
    secret: str
    busy: bool = False
    status: str = "offline"
    job_id: int | None = None


@dataclasses.dataclass
class RegistrationToken:
    scope_kind: str
    scope: str
    expires_at: float


@dataclasses.dataclass(slots=True)
class App:
    """A GitHub App the simulator knows (see :mod:`.apps`)."""

    app_id: str
    public_key: str  # PEM
    installation_id: int
    token_ttl_s: float = 3600.0
    exchanges: int = 0  # installation tokens issued
