"""GitHub wire shapes: endpoint templates, job entities, ``workflow_job`` fields. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from providers.base import PendingJob
from providers.errors import TransientProviderError, WebhookRejected
from providers.wire import parse_time


def endpoint_template(method: str, url: str, api_prefix: str = "") -> str:
    """``"GET /repos/:owner/:repo/actions/runs"`` for a request URL: low-cardinality.

    Owner, repository and organisation names become ``:owner``/``:repo``/``:org``; a
    numeric segment becomes ``:<singular of the previous segment>_id``.
    """
    path = urlsplit(url).path
    if api_prefix and path.startswith(api_prefix + "/"):
        path = path[len(api_prefix) :]
    parts = [p for p in path.split("/") if p]
    out: list[str] = []
    named = {"repos": (":owner", ":repo"), "orgs": (":org",), "users": (":user",)}
    i = 0
    while i < len(parts):
        part = parts[i]
        out.append(part)
        i += 1
        if len(out) == 1 and part in named:
            for placeholder in named[part]:
                if i < len(parts):
                    out.append(placeholder)
                    i += 1
        elif part.isdigit():
            prev = out[-2] if len(out) > 1 else ""
            out[-1] = f":{prev.removesuffix('s')}_id" if prev else ":id"
    return f"{method.upper()} /{'/'.join(out)}"


class MalformedAnswer(TransientProviderError):
    """GitHub (or a proxy in between) answered with a shape we cannot read."""


def items(page: object, key: str) -> list[dict[str, Any]]:
    """``page[key]`` (or ``page`` itself for a bare list) as a list of objects."""
    items = page.get(key) if isinstance(page, dict) else page if key == "" else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedAnswer(f"GitHub answer without a list of {key or 'items'}")
    return items


def int_field(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedAnswer(f"GitHub answer: {what} is not an integer")
    return value


def pending_job(job: Mapping[str, Any], repo: str) -> PendingJob:
    """A ``workflow_job`` (REST or webhook) as a :class:`PendingJob`."""
    labels = job.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise MalformedAnswer("job labels are not a list of strings")
    created = parse_time(job.get("created_at"))
    if created is None:
        raise MalformedAnswer("job without a readable created_at")
    return PendingJob(
        id=str(int_field(job.get("id"), "job id")),
        scope=repo,
        tags=tuple(labels),
        created_at=created,
        pipeline=str(job.get("run_id", "")),
        name=str(job.get("name") or ""),
    )


def workflow_job_fields(payload: Mapping[str, Any]) -> tuple[str, dict[str, Any], str]:
    """``(action, workflow_job, repository full_name)`` of a delivery, or 400."""
    action = payload.get("action")
    job = payload.get("workflow_job")
    repository = payload.get("repository")
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(action, str) or not isinstance(job, dict) or not isinstance(repo, str):
        raise WebhookRejected(400, "malformed workflow_job delivery: action/workflow_job/repo")
    job_id = job.get("id")
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise WebhookRejected(400, "malformed workflow_job delivery: workflow_job.id")
    return action, job, repo
