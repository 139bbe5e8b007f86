"""The OpenAPI 3.1 document of the daemon's HTTP API: the one source of truth.

Served at ``/api/v1/openapi.json`` and written to ``docs/openapi.json`` by
``python -m orchestrator.openapi docs/openapi.json`` (a test fails when the file drifts
from :func:`document`). Tests validate every response they see against it and fuzz every
route from it, so a handler that answers something undocumented fails the suite.

This module holds the paths and the document around them; the schemas and the shared
error answers they refer to are in :mod:`orchestrator.openapi_schemas`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.openapi_schemas import (
    JSON,
    RESPONSES,
    SCHEMAS,
    json_response,
    ref,
    response_ref,
)

#: Read endpoints served both at ``/<name>`` and ``/api/v1/<name>``.
READ_ALIASES = ("health", "ready", "status", "runners", "metrics")


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


#: Answers any route can give, whatever it does (see the middlewares in web/base.py).
_COMMON = {"421": response_ref("MisdirectedHost")}

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
    responses: dict[str, Any] = {"200": json_response(ref(schema), summary), **_COMMON}
    if unavailable:
        responses["503"] = json_response(ref(schema), "not healthy / not ready (with reasons)")
    operation: dict[str, Any] = {"summary": summary, "tags": ["read"], "responses": responses}
    if limited:
        operation["parameters"] = [_LIMIT]
        responses["400"] = response_ref("BadRequest")
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
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("ScaleRequest")}}},
            "responses": {
                "202": json_response(ref("ScaleAccepted"), "accepted"),
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "403": response_ref("Forbidden"),
                "408": response_ref("Timeout"),
                "413": response_ref("TooLarge"),
                "415": response_ref("Unsupported"),
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
                "202": json_response(ref("WebhookAccepted"), "accepted (possibly left to polling)"),
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "404": response_ref("NotFound"),
                "408": response_ref("Timeout"),
                "413": response_ref("TooLarge"),
                "415": response_ref("Unsupported"),
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
            "responses": {"200": json_response({"type": "object"}, "OpenAPI 3.1"), **_COMMON},
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
                "200": json_response(ref("Events"), "events"),
                "400": response_ref("BadRequest"),
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
                "400": response_ref("BadRequest"),
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
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "403": response_ref("Forbidden"),
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
                "200": json_response(ref("RunnerRemoval"), "removed"),
                "401": response_ref("Unauthorized"),
                "403": response_ref("Forbidden"),
                "404": response_ref("NotFound"),
                "409": json_response(ref("RunnerRemoval"), "busy, or could not be removed yet"),
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
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "403": response_ref("Forbidden"),
                "404": response_ref("NotFound"),
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
            "schemas": SCHEMAS,
            "responses": RESPONSES,
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
