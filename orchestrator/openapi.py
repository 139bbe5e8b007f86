"""The OpenAPI 3.1 document of the daemon's HTTP API: the one source of truth.

Served at ``/api/v1/openapi.json`` and written to ``docs/openapi.json`` by
``python -m orchestrator.openapi docs/openapi.json`` (a test fails when the file drifts
from :func:`document`). Tests validate every response they see against it and fuzz every
route from it, so a handler that answers something undocumented fails the suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.events import EVENT_WORDS
from orchestrator.models import RunnerState, WaitReason

JSON = "application/json"

#: Read endpoints served both at ``/<name>`` and ``/api/v1/<name>``.
READ_ALIASES = ("health", "ready", "status", "runners", "metrics")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _error(description: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{description}"}


_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_STR_LIST = {"type": "array", "items": {"type": "string"}}

_SCHEMAS: dict[str, Any] = {
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
            "forges": {"type": "array", "items": _ref("Forge")},
            "pools": {"type": "array", "items": _ref("Pool")},
            "hosts": {"type": "array", "items": _ref("Host")},
            "waiting_jobs": {
                "type": "array",
                "items": _ref("WaitingJob"),
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
            "runners": {"type": "array", "items": _ref("Runner")},
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
        "properties": {"events": {"type": "array", "items": _ref("Event")}},
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
            "runner": _ref("Runner"),
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

_RESPONSES: dict[str, Any] = {
    "BadRequest": _json(_ref("Error"), "malformed input (body, query or header)"),
    "Unauthorized": {
        **_json(_ref("Error"), "missing or wrong bearer token / webhook secret"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "Forbidden": _json(_ref("Error"), "management API disabled"),
    "NotFound": _json(_ref("Error"), "no such runner, forge or webhook kind"),
    "Timeout": _json(_ref("Error"), "the request body did not arrive in time"),
    "TooLarge": _json(_ref("Error"), "body larger than MAX_WEBHOOK_BYTES"),
    "Unsupported": _json(_ref("Error"), "body is not JSON in a known charset"),
    "MisdirectedHost": _json(_ref("Error"), "Host header not in HTTP_ALLOWED_HOSTS"),
}

#: Answers any route can give, whatever it does (see web.py middlewares).
_COMMON = {"421": _error("MisdirectedHost")}

_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
    "description": "most list items in the answer (the total counts all)",
}


def _read(
    summary: str, schema: str, *, unavailable: bool = False, limited: bool = False
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(_ref(schema), summary), **_COMMON}
    if unavailable:
        responses["503"] = _json(_ref(schema), "not healthy / not ready (with reasons)")
    operation: dict[str, Any] = {"summary": summary, "tags": ["read"], "responses": responses}
    if limited:
        operation["parameters"] = [_LIMIT]
        responses["400"] = _error("BadRequest")
    return {"get": operation}


def _metrics() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Prometheus text exposition format",
            "tags": ["read"],
            "responses": {
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_COMMON,
            },
        }
    }


def _scale(direction: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"scale a pool {direction} now (applied by the next reconcile)",
            "tags": ["management"],
            "security": _BEARER,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("ScaleRequest")}}},
            "responses": {
                "202": _json(_ref("ScaleAccepted"), "accepted"),
                "400": _error("BadRequest"),
                "401": _error("Unauthorized"),
                "403": _error("Forbidden"),
                "408": _error("Timeout"),
                "413": _error("TooLarge"),
                "415": _error("Unsupported"),
                **_COMMON,
            },
        }
    }


_RUNNER_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "runner id (from /runners)",
}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _webhook(with_forge: bool) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": "kind",
            "in": "path",
            "required": True,
            "schema": {"enum": ["gitlab", "github"]},
            "description": "the forge kind (anything else: 404)",
        }
    ]
    if with_forge:
        params.append(
            {
                "name": "forge",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "forge name, when several forges of one kind are configured",
            }
        )
    return {
        "post": {
            "summary": "forge webhook: GitLab Job Hook (X-Gitlab-Token) or GitHub "
            "workflow_job (X-Hub-Signature-256)",
            "tags": ["webhooks"],
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            "responses": {
                "202": _json(_ref("WebhookAccepted"), "accepted (possibly left to polling)"),
                "400": _error("BadRequest"),
                "401": _error("Unauthorized"),
                "404": _error("NotFound"),
                "408": _error("Timeout"),
                "413": _error("TooLarge"),
                "415": _error("Unsupported"),
                **_COMMON,
            },
        }
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict every call)."""
    paths: dict[str, Any] = {}
    reads = {
        "health": _read("liveness: the reconcile loop ran recently", "Health", unavailable=True),
        "ready": _read(
            "readiness: reconciled once, no forge paused, a Docker host answers",
            "Ready",
            unavailable=True,
        ),
        "status": _read(
            "forges, pools, hosts, waiting jobs and why they wait", "Status", limited=True
        ),
        "runners": _read("active and recently removed runners", "Runners", limited=True),
        "metrics": _metrics(),
    }
    for name in READ_ALIASES:
        paths[f"/{name}"] = reads[name]
        paths[f"/api/v1/{name}"] = reads[name]
    paths["/healthz"] = reads["health"]
    paths["/readyz"] = reads["ready"]
    paths["/api/v1/openapi.json"] = {
        "get": {
            "summary": "this document",
            "tags": ["read"],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_COMMON},
        }
    }
    paths["/api/v1/events"] = {
        "get": {
            "summary": "runner lifecycle history from the journal, newest first",
            "description": "Kept as long as the journal keeps the runner (removed runners "
            "are pruned after a retention period).",
            "tags": ["read"],
            "parameters": [
                _query("runner", {"type": "string", "minLength": 1, "maxLength": 200}),
                _query("pool", {"type": "string", "minLength": 1, "maxLength": 200}),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                _query(
                    "before",
                    {"type": "integer", "minimum": 1},
                    "only events with a smaller seq (the next page)",
                ),
            ],
            "responses": {
                "200": _json(_ref("Events"), "events"),
                "400": _error("BadRequest"),
                **_COMMON,
            },
        }
    }
    part = _query(
        "part",
        {"enum": ["live"]},
        "live: only the part of the page that refreshes itself (fetched by its script)",
    )
    paths["/"] = {
        "get": {
            "summary": "the status page for people (HTML, refreshes itself)",
            "tags": ["read"],
            "parameters": [part],
            "responses": {
                "200": _html("the page"),
                "400": _error("BadRequest"),
                **_COMMON,
            },
        }
    }
    paths["/runners/{id}"] = {
        "get": {
            "summary": "one runner's page: its state and history; with a bearer token, "
            "its log tail",
            "tags": ["read"],
            "parameters": [_RUNNER_ID, part],
            "responses": {
                "200": _html("the page"),
                "400": _error("BadRequest"),
                "401": _error("Unauthorized"),
                "403": _error("Forbidden"),
                "404": _html("no such runner (a page saying so)"),
                **_COMMON,
            },
        }
    }
    paths["/api/v1/runners/scale-up"] = _scale("up")
    paths["/api/v1/runners/scale-down"] = _scale("down")
    paths["/api/v1/runners/{id}"] = {
        "delete": {
            "summary": "retire one runner now unless it is busy",
            "tags": ["management"],
            "security": _BEARER,
            "parameters": [_RUNNER_ID],
            "responses": {
                "200": _json(_ref("RunnerRemoval"), "removed"),
                "401": _error("Unauthorized"),
                "403": _error("Forbidden"),
                "404": _error("NotFound"),
                "409": _json(_ref("RunnerRemoval"), "busy, or could not be removed yet"),
                **_COMMON,
            },
        }
    }
    paths["/api/v1/runners/{id}/logs"] = {
        "get": {
            "summary": "the runner container's last output (secrets redacted)",
            "tags": ["management"],
            "security": _BEARER,
            "parameters": [
                _RUNNER_ID,
                {
                    "name": "tail",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "default": 200},
                    "description": "lines from the end (clamped to 1..5000)",
                },
            ],
            "responses": {
                "200": {
                    "description": "log text",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "400": _error("BadRequest"),
                "401": _error("Unauthorized"),
                "403": _error("Forbidden"),
                "404": _error("NotFound"),
                **_COMMON,
            },
        }
    }
    paths["/webhooks/{kind}"] = _webhook(False)
    paths["/webhooks/{kind}/{forge}"] = _webhook(True)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runner-orchestrator",
            "version": __version__,
            "description": "Autoscaler for self-hosted GitLab/GitHub CI runners. Read "
            "endpoints are served from memory; management endpoints need "
            "`Authorization: Bearer <MANAGEMENT_TOKEN>` and MANAGEMENT_ENABLED; every "
            'error is JSON `{"error": ...}`.',
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "tags": [
            {"name": "read", "description": "no authentication, served from memory"},
            {"name": "management", "description": "bearer token (MANAGEMENT_TOKEN)"},
            {"name": "webhooks", "description": "authenticated by the forge's secret"},
        ],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "responses": _RESPONSES,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    """The document as the exact text kept in docs/openapi.json."""
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    """``python -m orchestrator.openapi [PATH]``: write the document (stdout without PATH)."""
    if len(argv) > 1:
        print("usage: python -m orchestrator.openapi [docs/openapi.json]", file=sys.stderr)
        return 2
    if argv:
        Path(argv[0]).write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
