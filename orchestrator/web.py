"""The HTTP API (aiohttp), run as a guest inside the daemon's event loop.

Read endpoints serve the reconciler's in-memory snapshot and never call a forge or
Docker inline. Management endpoints need ``Authorization: Bearer <MANAGEMENT_TOKEN>``.
Client mistakes get a 4xx with a JSON ``{"error": ...}`` body, never a 500.

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

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from orchestrator import openapi, page, runnerpage
from orchestrator.config import Settings
from orchestrator.events import event_json
from orchestrator.httpinput import (
    BadBody,
    BadQuery,
    allowed_hosts,
    host_name,
    int_query,
    parse_json,
    read_body,
    text_query,
)
from orchestrator.httpserver import HttpServer, InFlight, RateLimiter, serve
from orchestrator.logging import redact_text
from orchestrator.markup import HEADERS as PAGE_HEADERS
from orchestrator.metrics import Metrics
from orchestrator.models import RunnerState
from orchestrator.reconciler import Reconciler
from orchestrator.snapshot import runner_json
from orchestrator.state import Journal, UnknownRunner
from providers.base import Provider
from providers.errors import ProviderError, WebhookRejected

log = structlog.get_logger("orchestrator.web")

RECONCILER: web.AppKey[Reconciler] = web.AppKey("reconciler", Reconciler)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
JOURNAL: web.AppKey[Journal] = web.AppKey("journal", Journal)
IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", dict)
ALLOWED_HOSTS: web.AppKey[frozenset[str] | None] = web.AppKey("allowed_hosts", object)  # type: ignore[arg-type]
PROVIDERS: web.AppKey[Mapping[str, Provider]] = web.AppKey("providers", dict)
LAST_TICK: web.AppKey[Callable[[], float]] = web.AppKey("last_tick", object)  # type: ignore[arg-type]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Answer a webhook within this many seconds, whatever the forge lookup behind it does.
WEBHOOK_ANSWER_S = 5.0


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark the connection busy while it has a request (the connection cap spares it)."""
    busy = request.app[IN_FLIGHT]
    protocol = request.protocol
    busy[protocol] = busy.get(protocol, 0) + 1
    try:
        return await handler(request)
    finally:
        left = busy.get(protocol, 1) - 1
        if left <= 0:
            busy.pop(protocol, None)
        else:
            busy[protocol] = left


@web.middleware
async def _host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """DNS rebinding protection: refuse a Host header not in the allowed list (421).

    Webhooks are exempt: a browser tricked by rebinding cannot sign them, and reverse
    proxies (Caddy by default) pass the public Host of the hook URL through.
    """
    allowed = request.app[ALLOWED_HOSTS]
    if allowed is not None and not request.path.startswith("/webhooks/"):
        host = host_name(request.headers.get("Host", ""))
        if host not in allowed:
            request.app[METRICS].http_rejected.labels("host").inc()
            return _error(421, "Host header not allowed here (see HTTP_ALLOWED_HOSTS)")
    return await handler(request)


_BUG_LOG = RateLimiter()


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTML errors into JSON and keep bugs from leaking as tracebacks."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception as exc:
        # A bug: log it with its traceback, but once a minute per kind and route, so a
        # client repeating the request cannot fill the disk with the same traceback.
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "?"
        suppressed = _BUG_LOG.allow(f"{type(exc).__name__}:{request.method}:{where}")
        if suppressed is not None:
            log.exception("http.handler_failed", path=request.path[:200], suppressed=suppressed)
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


#: Default and largest number of items in /status and /runners lists (totals count all):
#: a forge page of 100k jobs made /status 25 MB before.
LIST_DEFAULT = 500
LIST_MAX = 5000


async def status(request: web.Request) -> web.Response:
    """Forges, pools, hosts and at most ``?limit=`` waiting jobs (``waiting_jobs_total``)."""
    try:
        limit = int_query(request, "limit", LIST_DEFAULT, 1, LIST_MAX)
    except BadQuery as exc:
        return _error(400, str(exc))
    return web.json_response(request.app[RECONCILER].snapshot.status_json(max_waiting=limit))


async def runners(request: web.Request) -> web.Response:
    """Active and recently removed runners, at most ``?limit=`` (``total`` counts all)."""
    try:
        limit = int_query(request, "limit", LIST_DEFAULT, 1, LIST_MAX)
    except BadQuery as exc:
        return _error(400, str(exc))
    snap = request.app[RECONCILER].snapshot
    listed = [runner_json(r) for r in snap.runners[:limit]]
    return web.json_response({"runners": listed, "total": len(snap.runners)})


#: Largest ``limit`` of GET /api/v1/events.
MAX_EVENTS = 1000


async def events(request: web.Request) -> web.Response:
    """Runner lifecycle history from the journal, newest first (``before`` pages back)."""
    try:
        limit = int_query(request, "limit", 100, 1, MAX_EVENTS)
        before = int_query(request, "before", None, 1, 2**62)
        runner = text_query(request, "runner")
        pool = text_query(request, "pool")
    except BadQuery as exc:
        return _error(400, str(exc))
    assert limit is not None
    found = request.app[JOURNAL].events(runner_id=runner, pool=pool, limit=limit, before=before)
    return web.json_response({"events": [event_json(e) for e in found]})


# --- the pages (page.py and runnerpage.py render, from the snapshot and the journal) -----


def _html(markup: str, status: int = 200) -> web.Response:
    return web.Response(text=markup, status=status, content_type="text/html", headers=PAGE_HEADERS)


def _part(request: web.Request) -> bool:
    """True for ``?part=live`` (the self-refreshing fragment); BadQuery for other values."""
    part = request.query.get("part")
    if part not in (None, "live"):
        raise BadQuery("part: 'live' or absent")
    return part == "live"


async def status_page(request: web.Request) -> web.Response:
    """``/``: the status page (same access as /status: read-only, no token)."""
    try:
        live = _part(request)
    except BadQuery as exc:
        return _error(400, str(exc))
    snap = request.app[RECONCILER].snapshot
    recent = request.app[JOURNAL].events(limit=page.LATEST_EVENTS)
    now = datetime.now(UTC)
    if live:
        return _html(page.status_live(snap, recent, now))
    return _html(page.status_page(snap, recent, now))


async def runner_page(request: web.Request) -> web.Response:
    """``/runners/<id>``: one runner and its history; its log tail only with the token."""
    try:
        live = _part(request)
    except BadQuery as exc:
        return _error(400, str(exc))
    runner_id = request.match_info["id"]
    journal = request.app[JOURNAL]
    try:
        runner = journal.get(runner_id)
    except UnknownRunner:
        return _html(runnerpage.not_found_page(f"No runner {runner_id[:100]!r}."), status=404)
    history = journal.events(runner_id=runner_id, limit=MAX_EVENTS)
    now = datetime.now(UTC)
    if live:
        return _html(runnerpage.runner_live(runner, history, now))
    logs = None
    if "Authorization" in request.headers:
        denied = _authorize(request)
        if denied is not None:
            return denied
        logs = redact_text(await request.app[RECONCILER].logs(runner_id, 200))
    settings = request.app[SETTINGS]
    return _html(
        runnerpage.runner_page(
            runner, history, now, logs=logs, management=settings.management_enabled
        )
    )


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


# --- management ----------------------------------------------------------------------------


#: Failed management logins: one log line per minute, all counted in the metric.
_AUTH_LOG = RateLimiter()


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
        request.app[METRICS].auth_failures.inc()
        suppressed = _AUTH_LOG.allow("auth")
        if suppressed is not None:
            log.warning(
                "management.auth_failed",
                path=request.path[:200],
                method=request.method,
                peer=request.remote,
                had_token=bool(header),
                suppressed=suppressed,
            )
        return web.json_response(
            {"error": "missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


#: Management bodies are tiny; anything bigger is a mistake or an attack.
MANAGEMENT_BODY_BYTES = 16 * 1024


async def _scale_body(request: web.Request) -> tuple[str, int] | web.Response:
    try:
        body = parse_json(request, await read_body(request, MANAGEMENT_BODY_BYTES))
    except BadBody as exc:
        return _error(exc.status, f'{exc.message} (expected {{"pool": name, "count": n}})')
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
        return _error(400, f"unknown pool {pool[:100]!r}")
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
        return _error(404, f"no runner {runner_id[:100]!r}")
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
        return _error(404, f"no runner {runner_id[:100]!r}")
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
    try:
        body = await read_body(request, limit)
    except BadBody as exc:
        result_label = "too_large" if exc.status == 413 else f"rejected_{exc.status}"
        metrics_.webhooks.labels(provider.name, result_label).inc()
        return _error(exc.status, exc.message)
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
    except RecursionError:
        # The provider parses the (authenticated) body; nesting beyond the parser's
        # recursion limit is malformed input, not a bug in the daemon.
        metrics_.webhooks.labels(provider.name, "rejected_400").inc()
        return _error(400, "body is not JSON: nested too deeply")
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
    app = web.Application(
        middlewares=[_in_flight, _errors, _host_check],
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
