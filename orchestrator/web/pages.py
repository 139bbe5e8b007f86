"""The HTML pages: the status page at ``/`` and one runner's page at ``/runners/<id>``.

orchestrator/page.py and runnerpage.py render them (pure), from the snapshot and the
journal; here they get their data, the page headers (CSP) and, for a request that carries
the management token, the runner's log tail.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from orchestrator import page, runnerpage
from orchestrator.httpinput import BadQuery
from orchestrator.logging import redact_text
from orchestrator.markup import HEADERS as PAGE_HEADERS
from orchestrator.state import UnknownRunner
from orchestrator.web.base import JOURNAL, RECONCILER, SETTINGS, authorize, json_error
from orchestrator.web.reads import MAX_EVENTS


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
        return json_error(400, str(exc))
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
        return json_error(400, str(exc))
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
        denied = authorize(request)
        if denied is not None:
            return denied
        logs = redact_text(await request.app[RECONCILER].logs(runner_id, 200))
    settings = request.app[SETTINGS]
    return _html(
        runnerpage.runner_page(
            runner, history, now, logs=logs, management=settings.management_enabled
        )
    )
