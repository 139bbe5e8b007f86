"""The HTTP API (aiohttp), run as a guest inside the daemon's event loop.

Read endpoints serve the reconciler's in-memory snapshot and never call a forge or
Docker inline. Management endpoints need ``Authorization: Bearer <MANAGEMENT_TOKEN>``.
Client mistakes get a 4xx with a JSON ``{"error": ...}`` body, never a 500.

=====================================  ================================================
GET  /health                           liveness: the reconcile loop ran recently
GET  /ready                            readiness: reconciled once, no forge paused
GET  /status                           forges, pools, hosts, waiting jobs and reasons
GET  /runners                          every runner (active and recently removed)
GET  /metrics                          Prometheus text format
(the same under /api/v1/...)
POST /api/v1/runners/scale-up          {"pool": name, "count": n}      (management)
POST /api/v1/runners/scale-down        {"pool": name, "count": n}      (management)
DELETE /api/v1/runners/{id}            retire one runner unless busy   (management)
GET  /api/v1/runners/{id}/logs         last container output           (management)
POST /webhooks/gitlab                  GitLab Job Hook (X-Gitlab-Token)
POST /webhooks/github                  GitHub workflow_job (X-Hub-Signature-256)
=====================================  ================================================
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from orchestrator.config import Settings
from orchestrator.logging import redact_text
from orchestrator.metrics import Metrics
from orchestrator.models import RunnerState
from orchestrator.reconciler import Reconciler
from orchestrator.snapshot import runner_json
from orchestrator.state import UnknownRunner
from providers.base import Provider
from providers.errors import ProviderError, WebhookRejected

log = structlog.get_logger("orchestrator.web")

RECONCILER: web.AppKey[Reconciler] = web.AppKey("reconciler", Reconciler)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
PROVIDERS: web.AppKey[Mapping[str, Provider]] = web.AppKey("providers", dict)
LAST_TICK: web.AppKey[Callable[[], float]] = web.AppKey("last_tick", object)  # type: ignore[arg-type]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Answer a webhook within this many seconds, whatever the forge lookup behind it does.
WEBHOOK_ANSWER_S = 5.0


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTML errors into JSON and keep bugs from leaking as tracebacks."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("http.handler_failed", path=request.path)
        return _error(500, "internal error (see the daemon log)")


# --- read endpoints -----------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    age = time.monotonic() - request.app[LAST_TICK]()
    limit = 3 * settings.poll_interval + 30
    body = {"status": "ok" if age <= limit else "stalled", "loop_age_s": round(age, 1)}
    return web.json_response(body, status=200 if age <= limit else 503)


async def ready(request: web.Request) -> web.Response:
    snap = request.app[RECONCILER].snapshot
    reasons = []
    if snap.result == "never":
        reasons.append("no reconcile has finished yet")
    elif snap.result == "error":
        reasons.append(f"last reconcile failed: {snap.error}")
    reasons += [f"forge {f.name} paused: {f.error}" for f in snap.forges if f.paused]
    reasons += [f"forge {f.name} stale: {f.stale}" for f in snap.forges if f.stale and not f.paused]
    if snap.hosts and not any(h.ok for h in snap.hosts):
        reasons.append("no Docker host answers")
    body = {"ready": not reasons, "reasons": reasons}
    return web.json_response(body, status=200 if not reasons else 503)


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[RECONCILER].snapshot.status_json())


async def runners(request: web.Request) -> web.Response:
    return web.json_response({"runners": request.app[RECONCILER].snapshot.runners_json()})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


# --- management ----------------------------------------------------------------------------


def _authorize(request: web.Request) -> web.Response | None:
    settings = request.app[SETTINGS]
    token = settings.management_token
    if not settings.management_enabled or token is None:
        return _error(403, "management API disabled (set MANAGEMENT_ENABLED and MANAGEMENT_TOKEN)")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        return web.json_response(
            {"error": "missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


async def _scale_body(request: web.Request) -> tuple[str, int] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, 'body must be JSON: {"pool": name, "count": n}')
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    pool, count = body.get("pool"), body.get("count", 1)
    if not isinstance(pool, str) or not pool:
        return _error(400, "pool: required string")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        return _error(400, "count: integer from 1 to 1000")
    try:
        request.app[SETTINGS].pool(pool)
    except KeyError:
        return _error(400, f"unknown pool {pool!r}")
    return pool, count


async def scale(request: web.Request, sign: int) -> web.Response:
    denied = _authorize(request)
    if denied is not None:
        return denied
    parsed = await _scale_body(request)
    if isinstance(parsed, web.Response):
        return parsed
    pool, count = parsed
    reconciler = request.app[RECONCILER]
    reconciler.request_scale(pool, sign * count)
    reconciler.nudge()
    log.info("management.scale", pool=pool, delta=sign * count)
    return web.json_response({"accepted": True, "pool": pool, "delta": sign * count}, status=202)


async def scale_up(request: web.Request) -> web.Response:
    return await scale(request, +1)


async def scale_down(request: web.Request) -> web.Response:
    return await scale(request, -1)


async def delete_runner(request: web.Request) -> web.Response:
    denied = _authorize(request)
    if denied is not None:
        return denied
    runner_id = request.match_info["id"]
    reconciler = request.app[RECONCILER]
    try:
        runner = await reconciler.retire_now(runner_id)
    except UnknownRunner:
        return _error(404, f"no runner {runner_id!r}")
    if runner.state is RunnerState.REMOVED:
        return web.json_response({"removed": True, "runner": runner_json(runner)})
    return web.json_response(
        {
            "removed": False,
            "reason": "runner is busy or could not be removed yet",
            "runner": runner_json(runner),
        },
        status=409,
    )


async def runner_logs(request: web.Request) -> web.Response:
    denied = _authorize(request)
    if denied is not None:
        return denied
    runner_id = request.match_info["id"]
    try:
        tail = int(request.query.get("tail", "200"))
    except ValueError:
        return _error(400, "tail: integer")
    try:
        text = await request.app[RECONCILER].logs(runner_id, max(1, min(tail, 5000)))
    except UnknownRunner:
        return _error(404, f"no runner {runner_id!r}")
    return web.Response(text=redact_text(text), content_type="text/plain")


# --- webhooks ------------------------------------------------------------------------------


def _provider_for(request: web.Request, kind: str) -> Provider | None:
    name = request.match_info.get("forge")
    for provider in request.app[PROVIDERS].values():
        if provider.kind == kind and (name is None or provider.name == name):
            return provider
    return None


async def webhook(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in {"gitlab", "github"}:
        return _error(404, "unknown webhook kind")
    provider = _provider_for(request, kind)
    metrics_ = request.app[METRICS]
    if provider is None:
        return _error(404, f"no {kind} forge configured")
    limit = request.app[SETTINGS].max_webhook_bytes
    if request.content_length is not None and request.content_length > limit:
        metrics_.webhooks.labels(provider.name, "too_large").inc()
        return _error(413, f"body larger than {limit} bytes")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        metrics_.webhooks.labels(provider.name, "too_large").inc()
        return _error(413, f"body larger than {limit} bytes")
    try:
        result = await asyncio.wait_for(
            provider.handle_webhook(dict(request.headers), body), WEBHOOK_ANSWER_S
        )
    except TimeoutError:
        # Forges give up after ~10 s. Enriching the event (e.g. GitLab job tags) took too
        # long: accept it and let a reconcile (which polls) pick the job up.
        metrics_.webhooks.labels(provider.name, "accepted_slow").inc()
        request.app[RECONCILER].nudge()
        return web.json_response({"accepted": True, "note": "processed by polling"}, status=202)
    except WebhookRejected as exc:
        metrics_.webhooks.labels(provider.name, f"rejected_{exc.status}").inc()
        log.info("webhook.rejected", forge=provider.name, status=exc.status, reason=str(exc))
        return _error(exc.status if 400 <= exc.status < 500 else 400, str(exc))
    except ProviderError as exc:
        # We could not enrich the event (e.g. fetch job tags): polling will catch up.
        metrics_.webhooks.labels(provider.name, "accepted_degraded").inc()
        request.app[RECONCILER].nudge()
        return web.json_response({"accepted": True, "note": str(exc)}, status=202)
    metrics_.webhooks.labels(provider.name, "accepted").inc()
    request.app[RECONCILER].on_webhook(provider.name, result)
    return web.json_response({"accepted": True, "event": result.event}, status=202)


def create_app(
    *,
    settings: Settings,
    reconciler: Reconciler,
    metrics_: Metrics,
    providers: Mapping[str, Provider],
    last_tick: Callable[[], float],
) -> web.Application:
    """The aiohttp application; the caller runs it with an AppRunner."""
    app = web.Application(middlewares=[_errors], client_max_size=settings.max_webhook_bytes + 1)
    app[SETTINGS] = settings
    app[RECONCILER] = reconciler
    app[METRICS] = metrics_
    app[PROVIDERS] = providers
    app[LAST_TICK] = last_tick
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
    app.router.add_post("/api/v1/runners/scale-up", scale_up)
    app.router.add_post("/api/v1/runners/scale-down", scale_down)
    app.router.add_delete("/api/v1/runners/{id}", delete_runner)
    app.router.add_get("/api/v1/runners/{id}/logs", runner_logs)
    app.router.add_post("/webhooks/{kind}", webhook)
    app.router.add_post("/webhooks/{kind}/{forge}", webhook)
    return app
