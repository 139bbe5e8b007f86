"""The OpenAPI document's components: the JSON schemas and the shared error answers.

Data, mostly: the shape of every JSON body the daemon sends or takes. Enumerations come
from the code that makes the values (``RunnerState``, ``WaitReason``, ``EVENT_WORDS``),
so the document cannot list a value the daemon never sends. The paths that use these
components, and the document around them, are in :mod:`orchestrator.openapi`.
"""

from __future__ import annotations

from typing import Any

from orchestrator.events import EVENT_WORDS
from orchestrator.models import RunnerState, WaitReason

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    """A reference to the schema ``name`` of :data:`SCHEMAS`."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response with a JSON body of ``schema``."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def response_ref(name: str) -> dict[str, Any]:
    """A reference to the shared response ``name`` of :data:`RESPONSES`."""
    return {"$ref": f"#/components/responses/{name}"}


_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_STR_LIST = {"type": "array", "items": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every 4xx/5xx answer of this API.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "loop_age_s"],
        "properties": {
            "status": {"enum": ["ok", "stalled"]},
            "loop_age_s": {"type": "number", "minimum": 0},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["ready", "reasons"],
        "properties": {"ready": {"type": "boolean"}, "reasons": _STR_LIST},
    },
    "Forge": {
        "type": "object",
        "required": ["name", "kind", "paused", "error", "pending_jobs"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"enum": ["gitlab", "github"]},
            "paused": {"type": "boolean"},
            "error": {"type": "string", "description": "why polling is paused ('' if not)"},
            "last_ok_at": _NULLABLE_TIME,
            "retry_at": _NULLABLE_TIME,
            "pending_jobs": {"type": "integer", "minimum": 0},
            "poll_interval_s": {"type": "number"},
            "rate_limit_remaining": {"type": ["integer", "null"]},
            "note": {"type": "string"},
            "stale": {
                "type": "string",
                "description": "why the forge's view is too old to trust ('' = fresh)",
            },
            "poll_mode": {
                "type": "string",
                "description": "how often the forge is polled and why, e.g. "
                "'fast (activity 12 s ago)', 'idle', 'webhook safety-net'",
            },
            "scope_errors": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "projects/repositories the forge refused (403/404) and why, "
                "skipped while the rest is served (at most 20 named; see scope_error_count)",
            },
            "scope_error_count": {"type": "integer", "minimum": 0},
            "jobs_capped": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "scopes whose waiting jobs were read only up to "
                "MAX_JOBS_PER_SCOPE -> jobs read (at most 20 named; see jobs_capped_count)",
            },
            "jobs_capped_count": {"type": "integer", "minimum": 0},
        },
    },
    "Pool": {
        "type": "object",
        "required": ["name", "forge", "platform", "labels", "max_runners", "active"],
        "properties": {
            "name": {"type": "string"},
            "forge": {"type": "string"},
            "platform": {"type": "string"},
            "labels": _STR_LIST,
            "max_runners": {"type": "integer"},
            "min_idle": {"type": "integer"},
            "pending_jobs": {"type": "integer"},
            "runners": {
                "type": "object",
                "description": "runner count by lifecycle state",
                "additionalProperties": {"type": "integer"},
            },
            "active": {"type": "integer"},
            "unavailable": {"type": "string", "description": "why it cannot start runners"},
        },
    },
    "Host": {
        "type": "object",
        "required": ["name", "ok"],
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "ok": {"type": "boolean"},
            "arch": {"type": "string"},
            "gpus": {"type": "integer"},
            "max_containers": {"type": "integer"},
            "containers": {"type": "integer"},
            "error": {"type": "string"},
        },
    },
    "WaitingJob": {
        "type": "object",
        "required": ["job", "forge", "id", "reason"],
        "properties": {
            "job": {"type": "string", "description": "<forge>:<job id>"},
            "forge": {"type": "string"},
            "id": {"type": "string"},
            "scope": {"type": "string"},
            "name": {"type": "string"},
            "tags": _STR_LIST,
            "created_at": _NULLABLE_TIME,
            "pool": {"type": ["string", "null"]},
            "reason": {"enum": [r.value for r in WaitReason]},
            "detail": {"type": "string"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["instance", "reconcile", "forges", "pools", "hosts", "waiting_jobs"],
        "properties": {
            "instance": {"type": "string"},
            "reconcile": {
                "type": "object",
                "required": ["result"],
                "properties": {
                    "result": {"enum": ["never", "ok", "degraded", "error"]},
                    "error": {"type": "string"},
                    "started_at": _NULLABLE_TIME,
                    "finished_at": _NULLABLE_TIME,
                    "last_ok_at": _NULLABLE_TIME,
                    "duration_s": {"type": "number"},
                    "count": {"type": "integer"},
                    "last_plan": {"type": "object"},
                },
            },
            "forges": {"type": "array", "items": ref("Forge")},
            "pools": {"type": "array", "items": ref("Pool")},
            "hosts": {"type": "array", "items": ref("Host")},
            "waiting_jobs": {
                "type": "array",
                "items": ref("WaitingJob"),
                "description": "at most ?limit= of them (oldest first as the planner saw them)",
            },
            "waiting_jobs_total": {"type": "integer", "description": "all waiting jobs"},
            "waiting_by_reason": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
            },
        },
    },
    "Runner": {
        "type": "object",
        "required": ["id", "name", "pool", "forge", "state", "since"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "pool": {"type": "string"},
            "forge": {"type": "string"},
            "state": {"enum": [s.value for s in RunnerState]},
            "since": {"type": "string", "format": "date-time"},
            "created_at": _NULLABLE_TIME,
            "platform": {"type": "string"},
            "scope": {
                "type": "string",
                "description": "project or owner/repo it was registered in when its forge"
                " registers runners in several; empty when it can serve any job of its pool",
            },
            "host": {"type": "string"},
            "container_id": {"type": "string"},
            "forge_runner_id": {"type": "string"},
            "current_job": {"type": "string"},
            "last_job_ended_at": _NULLABLE_TIME,
            "exit_code": {"type": ["integer", "null"]},
            "error": {"type": "string"},
        },
    },
    "Runners": {
        "type": "object",
        "required": ["runners"],
        "properties": {
            "runners": {"type": "array", "items": ref("Runner")},
            "total": {"type": "integer", "description": "runners known (listed or not)"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["seq", "at", "runner", "event", "to", "reason"],
        "properties": {
            "seq": {"type": "integer", "description": "journal order; pass as ?before="},
            "at": {"type": "string", "format": "date-time"},
            "runner": {"type": "string"},
            "pool": {"type": "string"},
            "forge": {"type": "string"},
            "event": {"enum": list(EVENT_WORDS)},
            "from": {"enum": [*(s.value for s in RunnerState), None]},
            "to": {"enum": [s.value for s in RunnerState]},
            "reason": {"type": "string"},
        },
    },
    "Events": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": ref("Event")}},
    },
    "ScaleRequest": {
        "type": "object",
        "required": ["pool"],
        "properties": {
            "pool": {"type": "string", "minLength": 1},
            "count": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
        },
    },
    "ScaleAccepted": {
        "type": "object",
        "required": ["accepted", "pool", "delta"],
        "properties": {
            "accepted": {"const": True},
            "pool": {"type": "string"},
            "delta": {"type": "integer"},
        },
    },
    "RunnerRemoval": {
        "type": "object",
        "required": ["removed", "runner"],
        "properties": {
            "removed": {"type": "boolean"},
            "reason": {"type": "string"},
            "runner": ref("Runner"),
        },
    },
    "WebhookAccepted": {
        "type": "object",
        "required": ["accepted"],
        "properties": {
            "accepted": {"const": True},
            "event": {"type": "string"},
            "note": {"type": "string", "description": "why polling will finish the work"},
        },
    },
}

RESPONSES: dict[str, Any] = {
    "BadRequest": json_response(ref("Error"), "malformed input (body, query or header)"),
    "Unauthorized": {
        **json_response(ref("Error"), "missing or wrong bearer token / webhook secret"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "Forbidden": json_response(ref("Error"), "management API disabled"),
    "NotFound": json_response(ref("Error"), "no such runner, forge or webhook kind"),
    "Timeout": json_response(ref("Error"), "the request body did not arrive in time"),
    "TooLarge": json_response(ref("Error"), "body larger than MAX_WEBHOOK_BYTES"),
    "Unsupported": json_response(ref("Error"), "body is not JSON in a known charset"),
    "MisdirectedHost": json_response(ref("Error"), "Host header not in HTTP_ALLOWED_HOSTS"),
}
