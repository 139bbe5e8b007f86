"""The GitHub simulator's API middleware and request helpers.

The middleware checks the token (``Authorization: token T`` or ``Bearer T``, else 401
``Bad credentials``), spends the primary rate limit, answers a matching
``If-None-Match`` with 304 (not counted, as GitHub documents for conditional requests)
and puts ``x-ratelimit-*`` on every API answer. ``page_of`` builds GitHub's ``Link``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.forgesim.common import Handler
from tests.forgesim.github import shapes
from tests.forgesim.github.apps import installation_token_valid
from tests.forgesim.github.model import API, Repo, Run, Runner
from tests.forgesim.github.state import SIM, GitHubSim


def error(status: int, message: str) -> web.Response:
    return shapes.error(status, message)


def _secondary_refusal(sim: GitHubSim) -> web.Response | None:
    """Count this request for the secondary limit (304s too); refuse it when over."""
    now = time.monotonic()
    times = sim.secondary_times
    times.append(now)
    while times and now - times[0] >= 60:
        times.popleft()
    rule = sim.faults.active("secondary_limit")
    if rule is None or len(times) <= int(rule.params.get("per_minute", 900)):
        return None
    rule.consume()
    return shapes.secondary_limit(
        int(rule.params.get("status", 403)),
        rule.params.get("retry_after"),
        str(rule.params.get("wording", "secondary")),
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
    if request.path.startswith(f"{API}/app/"):
        return await handler(request)  # JWT-authenticated: see .apps
    auth = request.headers.get("Authorization", "")
    presented = auth.partition(" ")[2] if auth.startswith(("token ", "Bearer ")) else ""
    if presented != sim.token and not installation_token_valid(sim, presented):
        response: web.StreamResponse = error(401, "Bad credentials")
        response.headers.update(sim.rate_headers())
        return response
    refused = _secondary_refusal(sim)
    if refused is not None:
        refused.headers.update(sim.rate_headers())
        return refused
    free = request.path == f"{API}/rate_limit"
    if not free and sim.rate_remaining <= 0:
        return shapes.primary_limit(403, sim.rate_limit, sim.rate_reset)
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
    sim = request.app[SIM]
    oversized = sim.faults.active("oversized_page")
    cap = 100 if oversized is None else int(oversized.params.get("size", 100_000))
    try:
        wanted = int(request.query.get("per_page", "30"))
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        raise web.HTTPUnprocessableEntity(reason="bad paging parameters") from None
    per_page = max(1, min(wanted if oversized is None else cap, cap))
    last = max(1, -(-len(items) // per_page))
    chosen = list(items[(page - 1) * per_page : page * per_page])
    path = id_form(sim, request) if sim.faults.active("id_links") else request.path
    base = f"{sim.root_url}{path}"

    def link(n: int, rel: str) -> str:
        query = {**request.query, "per_page": str(per_page), "page": str(n)}
        return f'<{base}?{urlencode(query)}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    return chosen, ({"Link": ", ".join(links)} if links else {})


def id_form(sim: GitHubSim, request: web.Request) -> str:
    """``request.path`` as GitHub writes it in ``Link``: ``/repositories/{id}/...`` and
    ``/organizations/{id}/...`` (e.g. PyGithub's ``ReplayData`` next-page URLs)."""
    info = request.match_info
    if "owner" in info:
        repo = sim.repos.get(f"{info['owner']}/{info['repo']}")
        prefix = f"{API}/repos/{info['owner']}/{info['repo']}"
        if repo is not None and request.path.startswith(prefix):
            return f"{API}/repositories/{repo.id}{request.path.removeprefix(prefix)}"
    if "org" in info and info["org"] in sim.orgs:
        prefix = f"{API}/orgs/{info['org']}"
        if request.path.startswith(prefix):
            return f"{API}/organizations/{sim.orgs[info['org']]}{request.path.removeprefix(prefix)}"
    return request.path


def repo_of(request: web.Request) -> Repo:
    """The repository of ``/repos/{owner}/{repo}/...`` or ``/repositories/{repo_id}/...``."""
    sim = request.app[SIM]
    info = request.match_info
    if "repo_id" in info:
        found = next((r for r in sim.repos.values() if str(r.id) == info["repo_id"]), None)
        if found is None:
            raise web.HTTPNotFound(reason="Not Found")
        return found
    full = f"{info['owner']}/{info['repo']}"
    if full not in sim.repos:
        raise web.HTTPNotFound(reason="Not Found")
    return sim.repos[full]


def org_of(request: web.Request) -> str:
    """The organisation of ``/orgs/{org}/...`` or ``/organizations/{org_id}/...``."""
    sim = request.app[SIM]
    info = request.match_info
    if "org_id" in info:
        org = next((o for o, oid in sim.orgs.items() if str(oid) == info["org_id"]), None)
    else:
        org = info["org"] if info["org"] in sim.orgs else None
    if org is None:
        raise web.HTTPNotFound(reason="Not Found")
    return org


def runner_scope(request: web.Request) -> tuple[str, str]:
    """``("repo", "o/r")`` or ``("org", "org")`` for a runner endpoint; 404 if unknown."""
    if "org" in request.match_info or "org_id" in request.match_info:
        return "org", org_of(request)
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
