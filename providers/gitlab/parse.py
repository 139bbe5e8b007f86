"""GitLab wire shapes: endpoint templates, job entities, Job Hook fields. Pure."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from providers.base import PendingJob, RunnerRef
from providers.errors import PermanentProviderError, WebhookRejected
from providers.wire import parse_time

JSON = dict[str, Any]

_ID_AFTER = {"projects": ":id", "groups": ":id", "runners": ":id", "jobs": ":job_id"}
_KEYWORDS = frozenset(
    {"all", "verify", "request", "jobs", "projects", "subgroups", "runners", "user", "groups"}
)


def endpoint_template(method: str, url: str) -> str:
    """``GET http://h/api/v4/projects/a%2Fb/jobs?x`` -> ``GET /projects/:id/jobs``.

    Low cardinality on purpose: ids and paths become placeholders.
    """
    path = urlsplit(url).path
    for prefix in ("/api/v4", "/api"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
            break
    out: list[str] = []
    previous = ""
    for segment in path.strip("/").split("/"):
        if previous in _ID_AFTER and segment not in _KEYWORDS:
            out.append(_ID_AFTER[previous])
        else:
            out.append(segment)
        previous = segment
    return f"{method.upper()} /{'/'.join(out)}"


def _gid_number(value: object) -> str:
    """``gid://gitlab/Ci::Build/42`` -> ``42`` (GraphQL ids are global ids)."""
    text = str(value or "")
    return text.rsplit("/", 1)[-1]


def job_from_rest(job: JSON, scope: str) -> PendingJob:
    """A REST job entity (``GET /projects/:id/jobs``) as a :class:`PendingJob`."""
    pipeline = job.get("pipeline") or {}
    return PendingJob(
        id=str(job["id"]),
        scope=scope,
        tags=tuple(str(t) for t in job.get("tag_list") or ()),
        created_at=parse_time(job.get("created_at")) or datetime.now(UTC),
        pipeline=str(pipeline.get("id", "")) if isinstance(pipeline, dict) else "",
        name=str(job.get("name") or ""),
    )


def job_from_graphql(node: JSON) -> PendingJob:
    """A GraphQL ``CiJob`` node as a :class:`PendingJob`."""
    project = node.get("project") or {}
    pipeline = node.get("pipeline") or {}
    return PendingJob(
        id=_gid_number(node.get("id")),
        scope=str(project.get("fullPath") or _gid_number(project.get("id"))),
        tags=tuple(str(t) for t in node.get("tags") or ()),
        created_at=parse_time(node.get("createdAt")) or datetime.now(UTC),
        pipeline=_gid_number(pipeline.get("id")) if pipeline else "",
        name=str(node.get("name") or ""),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Project:
    """One project to poll: ``key`` is what the API path uses, ``scope`` what jobs report."""

    key: str
    scope: str


def runner_id(ref: RunnerRef) -> str:
    """GitLab hands out the id at registration, so a reference always carries one."""
    if ref.forge_id is None:
        raise PermanentProviderError(f"GitLab runner {ref} has no id (GitLab always gives one)")
    return ref.forge_id


def parse_json_object(body: bytes) -> JSON:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: 400
        raise WebhookRejected(400, "body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


def _strict_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def job_hook_fields(payload: JSON) -> tuple[int, int, str]:
    """``(build_id, project_id, build_status)`` of a Job Hook, or 400."""
    if payload.get("object_kind") != "build":
        raise WebhookRejected(400, "Job Hook without object_kind 'build'")
    job_id = _strict_int(payload.get("build_id"))
    project_id = _strict_int(payload.get("project_id"))
    status = payload.get("build_status")
    if job_id is None or project_id is None or not isinstance(status, str):
        raise WebhookRejected(400, "Job Hook needs integer build_id/project_id and a status")
    if not re.fullmatch(r"[a-z_]+", status):
        raise WebhookRejected(400, "Job Hook build_status is not a status")
    return job_id, project_id, status


def payload_scope(payload: JSON, project_id: int) -> str:
    project = payload.get("project")
    if isinstance(project, dict):
        path = project.get("path_with_namespace")
        if isinstance(path, str) and path:
            return path
    return str(project_id)
