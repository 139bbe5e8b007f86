"""The HTTP API (aiohttp), run as a guest inside the daemon's event loop.

Read endpoints serve the reconciler's in-memory snapshot and never call a forge or
Docker inline. Management endpoints need ``Authorization: Bearer <MANAGEMENT_TOKEN>``.
Client mistakes get a 4xx with a JSON ``{"error": ...}`` body, never a 500.

This module assembles the application; the routes are grouped by concern: ``reads``
(JSON and metrics), ``pages`` (HTML), ``manage`` (management actions), ``webhooks``, and
``base`` holds what they share (app keys, errors, middlewares, the token check).

=====================================  ================================================
GET  /                                 the status page (HTML; ?part=live: the refreshing part)
GET  /runners/{id}                     one runner's page: history; log tail with the token
GET  /health                           liveness: the reconcile loop ran recently
GET  /ready                            readiness: reconciled once, no forge paused
GET  /status                           forges, pools, hosts, waiting jobs and reasons
GET  /runners                          every runner (active and recently removed)
GET  /metrics                          Prometheus text format
(the same under /api/v1/...)
GET  /api/v1/openapi.json              the OpenAPI 3.1 document (orchestrator/openapi.py)
GET  /api/v1/events?runner=&pool=&limit=&before=   runner lifecycle history, newest first
POST /api/v1/runners/scale-up          {"pool": name, "count": n}      (management)
POST /api/v1/runners/scale-down        {"pool": name, "count": n}      (management)
DELETE /api/v1/runners/{id}            retire one runner unless busy   (management)
GET  /api/v1/runners/{id}/logs         last container output           (management)
POST /webhooks/gitlab                  GitLab Job Hook (X-Gitlab-Token)
POST /webhooks/github                  GitHub workflow_job (X-Hub-Signature-256)
=====================================  ================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from orchestrator.config import Settings
from orchestrator.httpinput import allowed_hosts
from orchestrator.httpserver import HttpServer, RateLimiter, serve
from orchestrator.metrics import Metrics
from orchestrator.reconciler import Reconciler
from orchestrator.web.base import (
    ALLOWED_HOSTS,
    AUTH_LOG,
    IN_FLIGHT,
    JOURNAL,
    LAST_TICK,
    METRICS,
    MIDDLEWARES,
    PROVIDERS,
    RECONCILER,
    SETTINGS,
)
from orchestrator.web.manage import delete_runner, runner_logs, scale_down, scale_up
from orchestrator.web.pages import runner_page, status_page
from orchestrator.web.reads import events, health, metrics, openapi_json, ready, runners, status
from orchestrator.web.webhooks import webhook
from providers.base import Provider


def create_app(
    *,
    settings: Settings,
    reconciler: Reconciler,
    metrics_: Metrics,
    providers: Mapping[str, Provider],
    last_tick: Callable[[], float],
) -> web.Application:
    """The aiohttp application; the caller runs it with an AppRunner."""
    app = web.Application(
        middlewares=MIDDLEWARES,
        client_max_size=settings.max_webhook_bytes + 1,
    )
    app[IN_FLIGHT] = {}
    app[ALLOWED_HOSTS] = allowed_hosts(settings)
    app[SETTINGS] = settings
    app[RECONCILER] = reconciler
    app[JOURNAL] = reconciler.journal
    app[METRICS] = metrics_
    app[PROVIDERS] = providers
    app[LAST_TICK] = last_tick
    app[AUTH_LOG] = RateLimiter()
    reads: dict[str, Any] = {
        "health": health,
        "ready": ready,
        "status": status,
        "runners": runners,
        "metrics": metrics,
    }
    for path, handler in reads.items():
        app.router.add_get(f"/{path}", handler)
        app.router.add_get(f"/api/v1/{path}", handler)
    app.router.add_get("/healthz", health)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/api/v1/events", events)
    app.router.add_get("/", status_page)
    app.router.add_get("/runners/{id}", runner_page)
    app.router.add_post("/api/v1/runners/scale-up", scale_up)
    app.router.add_post("/api/v1/runners/scale-down", scale_down)
    app.router.add_delete("/api/v1/runners/{id}", delete_runner)
    app.router.add_get("/api/v1/runners/{id}/logs", runner_logs)
    app.router.add_post("/webhooks/{kind}", webhook)
    app.router.add_post("/webhooks/{kind}/{forge}", webhook)
    return app


async def start_server(app: web.Application, host: str, port: int) -> HttpServer:
    """Serve ``app`` with timeouts, the connection cap and log limits (httpserver.py)."""
    metrics_ = app[METRICS]
    return await serve(
        app,
        host,
        port,
        in_flight=app[IN_FLIGHT],
        on_reject=lambda reason: metrics_.http_rejected.labels(reason).inc(),
    )
