"""The GitHub simulator's API middleware and request helpers.

The middleware checks the token (``Authorization: token T`` or ``Bearer T``, else 401
``Bad credentials``), spends the primary rate limit, answers a matching
``If-None-Match`` with 304 (not counted, as GitHub documents for conditional requests)
and puts ``x-ratelimit-*`` on every API answer. ``page_of`` builds GitHub's ``Link``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.forgesim.common import Handler
from tests.forgesim.github.model import API, Repo, Run, Runner
from tests.forgesim.github.state import SIM, GitHubSim


def error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": "https://docs.github.com/rest"}, status=status
    )


# ---------------------------------------------------------------------------------------
# The API middleware: token, rate limit, ETag, x-ratelimit-* headers.


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM]
    # URLs in bodies and JIT configs use the address the client used (the port is random).
    sim.root_url = f"{request.scheme}://{request.host}"
    if not request.path.startswith(API + "/"):
        return await handler(request)
    auth = request.headers.get("Authorization", "")
    if auth not in {f"token {sim.token}", f"Bearer {sim.token}"}:
        response: web.StreamResponse = error(401, "Bad credentials")
        response.headers.update(sim.rate_headers())
        return response
    free = request.path == f"{API}/rate_limit"
    if not free and sim.rate_remaining <= 0:
        response = error(403, "API rate limit exceeded for user.")
        response.headers.update(sim.rate_headers())
        return response
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = error(exc.status, exc.reason)
    if request.method == "GET" and response.status == 200 and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        etag = 'W/"' + hashlib.sha1(body, usedforsecurity=False).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            not_modified = web.Response(status=304, headers={"ETag": etag})
            not_modified.headers.update(sim.rate_headers())
            return not_modified
        response.headers["ETag"] = etag
    if not free:
        sim.rate_used += 1
    response.headers.update(sim.rate_headers())
    return response


def page_of(request: web.Request, items: Sequence[Any]) -> tuple[list[Any], dict[str, str]]:
    """Slice ``items`` by ``per_page``/``page`` and build the ``Link`` header."""
    try:
        per_page = max(1, min(int(request.query.get("per_page", "30")), 100))
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        raise web.HTTPUnprocessableEntity(reason="bad paging parameters") from None
    last = max(1, -(-len(items) // per_page))
    chosen = list(items[(page - 1) * per_page : page * per_page])
    base = f"{request.app[SIM].root_url}{request.path}"

    def link(n: int, rel: str) -> str:
        query = {**request.query, "per_page": str(per_page), "page": str(n)}
        return f'<{base}?{urlencode(query)}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    return chosen, ({"Link": ", ".join(links)} if links else {})


def repo_of(request: web.Request) -> Repo:
    sim = request.app[SIM]
    full = f"{request.match_info['owner']}/{request.match_info['repo']}"
    if full not in sim.repos:
        raise web.HTTPNotFound(reason="Not Found")
    return sim.repos[full]


def runner_scope(request: web.Request) -> tuple[str, str]:
    """``("repo", "o/r")`` or ``("org", "org")`` for a runner endpoint; 404 if unknown."""
    sim = request.app[SIM]
    if "org" in request.match_info:
        org = request.match_info["org"]
        if org not in sim.orgs:
            raise web.HTTPNotFound(reason="Not Found")
        return "org", org
    return "repo", repo_of(request).full_name


def run_of(request: web.Request) -> Run:
    sim = request.app[SIM]
    repo = repo_of(request)
    run = sim.runs.get(int(request.match_info["run_id"]))
    if run is None or run.repo != repo.full_name:
        raise web.HTTPNotFound(reason="Not Found")
    return run


def scoped_runners(sim: GitHubSim, scope: tuple[str, str]) -> list[Runner]:
    return [r for r in sim.runners.values() if (r.scope_kind, r.scope) == scope]


def runner_of(request: web.Request) -> Runner:
    sim = request.app[SIM]
    scope = runner_scope(request)
    try:
        runner = sim.runners.get(int(request.match_info["runner_id"]))
    except ValueError:
        runner = None
    if runner is None or (runner.scope_kind, runner.scope) != scope:
        raise web.HTTPNotFound(reason="Not Found")
    return runner
