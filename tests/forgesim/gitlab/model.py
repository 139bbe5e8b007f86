"""The GitLab simulator's data: projects, groups, jobs and runners as plain records.

Field names follow GitLab's own models where they matter to clients (``tag_list`` comes
from ``Job.tags``; status values are ``Ci::HasStatus::AVAILABLE_STATUSES``).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
JOBS_PER_MINUTE = 600
STATUSES = [
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
]


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass
class Group:
    id: int
    path: str
    full_path: str
    parent_id: int | None


@dataclasses.dataclass
class Project:
    id: int
    path: str
    path_with_namespace: str
    group_id: int | None
    created_at: datetime = dataclasses.field(default_factory=now_utc)


@dataclasses.dataclass
class Job:
    id: int
    project_id: int
    pipeline_id: int
    tags: list[str]
    duration: float
    name: str
    status: str = "pending"
    runner_id: int | None = None
    token: str = ""
    created_at: datetime = dataclasses.field(default_factory=now_utc)
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclasses.dataclass
class Runner:
    id: int
    description: str
    tags: list[str]
    run_untagged: bool
    token: str
    runner_type: str = "instance_type"
    group_id: int | None = None
    project_id: int | None = None
    created_at: datetime = dataclasses.field(default_factory=now_utc)
    contacted_at: datetime | None = None
    paused: bool = False
