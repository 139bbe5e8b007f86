"""The read endpoints: health, readiness, /status, /runners, events, metrics, OpenAPI.

Served from the reconciler's in-memory snapshot (and the journal for events); they never
call a forge or Docker inline, and need no token.
"""

from __future__ import annotations

import time

from aiohttp import web

from orchestrator import openapi
from orchestrator.events import event_json
from orchestrator.httpinput import BadQuery, int_query, text_query
from orchestrator.snapshot import runner_json
from orchestrator.web.base import JOURNAL, LAST_TICK, METRICS, RECONCILER, SETTINGS, json_error


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
        return json_error(400, str(exc))
    return web.json_response(request.app[RECONCILER].snapshot.status_json(max_waiting=limit))


async def runners(request: web.Request) -> web.Response:
    """Active and recently removed runners, at most ``?limit=`` (``total`` counts all)."""
    try:
        limit = int_query(request, "limit", LIST_DEFAULT, 1, LIST_MAX)
    except BadQuery as exc:
        return json_error(400, str(exc))
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
        return json_error(400, str(exc))
    assert limit is not None
    found = request.app[JOURNAL].events(runner_id=runner, pool=pool, limit=limit, before=before)
    return web.json_response({"events": [event_json(e) for e in found]})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
