"""The management actions: scale a pool, retire a runner, read its logs.

Each needs ``Authorization: Bearer <MANAGEMENT_TOKEN>`` with MANAGEMENT_ENABLED
(:func:`orchestrator.web.base.authorize`); a scale request is applied by the next
reconcile, which it nudges at once.
"""

from __future__ import annotations

from aiohttp import web

from orchestrator.httpinput import BadBody, parse_json, read_body
from orchestrator.logging import redact_text
from orchestrator.models import RunnerState
from orchestrator.snapshot import runner_json
from orchestrator.state import UnknownRunner
from orchestrator.web.base import RECONCILER, SETTINGS, authorize, json_error, log

#: Management bodies are tiny; anything bigger is a mistake or an attack.
MANAGEMENT_BODY_BYTES = 16 * 1024


async def _scale_body(request: web.Request) -> tuple[str, int] | web.Response:
    try:
        body = parse_json(request, await read_body(request, MANAGEMENT_BODY_BYTES))
    except BadBody as exc:
        return json_error(exc.status, f'{exc.message} (expected {{"pool": name, "count": n}})')
    if not isinstance(body, dict):
        return json_error(400, "body must be a JSON object")
    pool, count = body.get("pool"), body.get("count", 1)
    if not isinstance(pool, str) or not pool:
        return json_error(400, "pool: required string")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        return json_error(400, "count: integer from 1 to 1000")
    try:
        request.app[SETTINGS].pool(pool)
    except KeyError:
        return json_error(400, f"unknown pool {pool[:100]!r}")
    return pool, count


async def scale(request: web.Request, sign: int) -> web.Response:
    denied = authorize(request)
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
    denied = authorize(request)
    if denied is not None:
        return denied
    runner_id = request.match_info["id"]
    reconciler = request.app[RECONCILER]
    try:
        runner = await reconciler.retire_now(runner_id)
    except UnknownRunner:
        return json_error(404, f"no runner {runner_id[:100]!r}")
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
    denied = authorize(request)
    if denied is not None:
        return denied
    runner_id = request.match_info["id"]
    try:
        tail = int(request.query.get("tail", "200"))
    except ValueError:
        return json_error(400, "tail: integer")
    try:
        text = await request.app[RECONCILER].logs(runner_id, max(1, min(tail, 5000)))
    except UnknownRunner:
        return json_error(404, f"no runner {runner_id[:100]!r}")
    return web.Response(text=redact_text(text), content_type="text/plain")
