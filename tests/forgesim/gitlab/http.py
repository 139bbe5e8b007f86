"""Request helpers shared by the GitLab simulator's handlers: token check, bodies, pagination.

GitLab's API token comes in ``PRIVATE-TOKEN`` or ``Authorization: Bearer``; a wrong or
missing one is 401 ``{"message":"401 Unauthorized"}``. Offset pagination follows
``lib/api/helpers/pagination.rb``: ``Link`` with next/prev/first[/last] and ``X-*``
headers, without ``X-Total`` where GitLab paginates ``without_count`` (the jobs lists).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.forgesim.gitlab.model import DEFAULT_PER_PAGE, JSON, MAX_PER_PAGE
from tests.forgesim.gitlab.state import SIM, GitLabSim


def sim_of(request: web.Request) -> GitLabSim:
    return request.app[SIM]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def auth(request: web.Request) -> GitLabSim:
    """GitLab's API token check: ``PRIVATE-TOKEN`` or ``Authorization: Bearer``."""
    sim = sim_of(request)
    given = request.headers.get("PRIVATE-TOKEN", "")
    bearer = request.headers.get("Authorization", "")
    if not given and bearer.lower().startswith("bearer "):
        given = bearer[7:]
    if not given or not secrets.compare_digest(given.encode(), sim.token.encode()):
        raise web.HTTPUnauthorized(
            text='{"message":"401 Unauthorized"}', content_type="application/json"
        )
    return sim


def admin_only(request: web.Request) -> GitLabSim:
    sim = auth(request)
    if not sim.admin:
        raise web.HTTPForbidden(text='{"message":"403 Forbidden"}', content_type="application/json")
    return sim


async def json_body(request: web.Request) -> JSON:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error":"invalid JSON"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error":"want an object"}', content_type="application/json")
    return body


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(request.query.get(name, default))))
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error":"{name} is invalid"}}', content_type="application/json"
        ) from None


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def paginate(
    request: web.Request,
    items: Sequence[Any],
    *,
    with_total: bool = True,
    extra_headers: dict[str, str] | None = None,
    render: Callable[[Any], JSON] | None = None,
) -> web.Response:
    """GitLab offset pagination: ``Link`` (next/prev/first[/last]) and ``X-*`` headers.

    ``render`` turns the items of the chosen page into JSON (so a 100k-item list costs one
    page of entities). While an ``oversized_page`` fault is live the 100 cap is ignored."""
    oversized = sim_of(request).faults.active("oversized_page")
    if oversized is None:
        per_page = int_param(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    else:
        per_page = max(1, int(oversized.params.get("size", 100_000)))
    page = int_param(request, "page", 1, 1, 1_000_000)
    start = (page - 1) * per_page
    chunk = [item if render is None else render(item) for item in items[start : start + per_page]]
    has_next = start + per_page < len(items)
    total_pages = max(1, -(-len(items) // per_page))
    raw_path = request.raw_path.split("?", 1)[0]  # keeps %2F in project paths
    params = [(k, v) for k, v in request.query.items() if k != "page"]

    def link(p: int, rel: str) -> str:
        query = urlencode([*params, ("page", str(p))])
        return f'<{base_url(request)}{raw_path}?{query}>; rel="{rel}"'

    links = [link(page + 1, "next")] if has_next else []
    if page > 1:
        links.append(link(page - 1, "prev"))
    links.append(link(1, "first"))
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(page + 1) if has_next else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
        **(extra_headers or {}),
    }
    if with_total:
        links.append(link(total_pages, "last"))
        headers.update({"X-Total": str(len(items)), "X-Total-Pages": str(total_pages)})
    headers["Link"] = ", ".join(links)
    return web.json_response(chunk, headers=headers)


def tag_list(value: object) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    return None


def as_int(value: object) -> int:
    """GitLab (Grape) coerces ``"7"`` and ``7`` alike for integer params; -1 = invalid."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return -1
