"""What every route group of the HTTP API shares: app keys, JSON errors, middlewares and
the management token check.

Client mistakes get a 4xx with a JSON ``{"error": ...}`` body, never a 500; aiohttp's own
HTML errors are turned into that shape here, and a bug is a logged 500 with the same
shape (never a traceback to the client).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from orchestrator.config import Settings
from orchestrator.httpinput import host_name
from orchestrator.httpserver import InFlight, RateLimiter
from orchestrator.metrics import Metrics
from orchestrator.reconciler import Reconciler
from orchestrator.state import Journal
from providers.base import Provider

#: The one logger of the HTTP API (every route group logs as "orchestrator.web").
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


def json_error(status: int, message: str) -> web.Response:
    """The API's error answer: ``{"error": message}``."""
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
            return json_error(421, "Host header not allowed here (see HTTP_ALLOWED_HOSTS)")
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
        return json_error(exc.status, exc.reason)
    except Exception as exc:
        # A bug: log it with its traceback, but once a minute per kind and route, so a
        # client repeating the request cannot fill the disk with the same traceback.
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "?"
        suppressed = _BUG_LOG.allow(f"{type(exc).__name__}:{request.method}:{where}")
        if suppressed is not None:
            log.exception("http.handler_failed", path=request.path[:200], suppressed=suppressed)
        return json_error(500, "internal error (see the daemon log)")


#: In the order they wrap a handler (the first is outermost).
MIDDLEWARES = (_in_flight, _errors, _host_check)


#: Failed management logins: one log line per minute per app, all counted in the metric.
AUTH_LOG: web.AppKey[RateLimiter] = web.AppKey("auth_log", RateLimiter)


def authorize(request: web.Request) -> web.Response | None:
    """None for the management token; otherwise the 403 (disabled) or 401 to answer."""
    settings = request.app[SETTINGS]
    token = settings.management_token
    if not settings.management_enabled or token is None:
        return json_error(
            403, "management API disabled (set MANAGEMENT_ENABLED and MANAGEMENT_TOKEN)"
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        request.app[METRICS].auth_failures.inc()
        suppressed = request.app[AUTH_LOG].allow("auth")
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
