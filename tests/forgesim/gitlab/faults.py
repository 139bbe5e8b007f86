"""GitLab-shaped faults: refusals of one project, the 429 shapes, GraphQL refused.

Answer kinds (the shared middleware answers the request with them; bounds, ``match``
and ``count`` as in :mod:`tests.forgesim.faults`):

* ``forbidden`` ``{project?, reason?}``: 403 ``{"message": "403 Forbidden"}`` (or
  ``"403 Forbidden - <reason>"``). With ``project`` (id or full path) it matches only
  that project's job endpoints, the others answer normally. The request still counts
  against the ``jobs_index`` limiter, which ``lib/api/ci/jobs.rb`` checks *before*
  ``authorize_read_builds!``.
* ``not_found`` ``{project?}``: 404 ``{"message": "404 Project Not Found"}`` (a project
  the token's user cannot see at all).
* ``rate_limit`` ``{shape: "jobs_limiter"|"rack_attack", retry_after?}``: the two 429s a
  GitLab client meets (see the functions below for sources).
* ``graphql_refused`` ``{shape: "not_found"|"forbidden"|"field_missing"}``: for
  ``POST /api/graphql`` (matched automatically): an instance without the endpoint, one
  that refuses the token, or one whose schema lacks ``Project.jobs``.

State kinds (read by the handlers while live):

* ``gitlab_limiter`` ``{per_minute?, retry_after?: bool}``: the ``jobs_index`` limiter
  as GitLab really answers: no ``RateLimit-*`` headers on 200s, and a 429 whose only
  header is ``Retry-After`` (when ``retry_after`` is true) or none at all. Without it
  the sim keeps its older, friendlier limiter (``RateLimit-*`` everywhere).
* ``oversized_page`` ``{size?}``: list endpoints ignore the ``per_page`` cap of 100 and
  answer up to ``size`` (default 100000) items in one page.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.forgesim.faults import FaultRule
from tests.forgesim.gitlab.shapes import jobs_limiter_429, rack_attack_429
from tests.forgesim.gitlab.state import SIM, GitLabSim

STATE_KINDS = ("gitlab_limiter", "oversized_page")
_JOB_LIST = re.compile(r"^/api/v4/projects/[^/]+/jobs$")


def _message(status: int, text: str) -> web.Response:
    return web.json_response({"message": text}, status=status)


def forbidden(rule: FaultRule, request: web.Request) -> web.Response:
    # lib/api/helpers.rb: forbidden!(reason) renders "403 Forbidden[ - reason]";
    # lib/api/ci/jobs.rb: GET :id/jobs runs check_rate_limit!(:jobs_index) and then
    # authorize_read_builds! (CI/CD disabled, repository disabled, Guest -> 403).
    sim = request.app[SIM]
    if request.method == "GET" and _JOB_LIST.search(request.raw_path.split("?", 1)[0]):
        sim.count_job_list()
    reason = rule.params.get("reason")
    return _message(403, "403 Forbidden" + (f" - {reason}" if reason else ""))


def not_found(rule: FaultRule, request: web.Request) -> web.Response:  # noqa: ARG001
    # lib/api/helpers.rb: not_found!('Project') -> 404 {"message":"404 Project Not Found"}.
    return _message(404, "404 Project Not Found")


def rate_limit(rule: FaultRule, request: web.Request) -> web.Response:  # noqa: ARG001
    shape = str(rule.params.get("shape", "jobs_limiter"))
    retry_after = rule.params.get("retry_after")
    if shape == "rack_attack":
        return rack_attack_429(retry_after if retry_after is not None else 60)
    return jobs_limiter_429(retry_after)


def graphql_refused(rule: FaultRule, request: web.Request) -> web.Response:  # noqa: ARG001
    shape = str(rule.params.get("shape", "not_found"))
    if shape == "field_missing":
        # graphql-ruby's static validation error for a field an older schema lacks
        # (Project.jobs appeared in GitLab 13.x); answered 200, as GraphQL does.
        return web.json_response(
            {
                "errors": [
                    {
                        "message": "Field 'jobs' doesn't exist on type 'Project'",
                        "locations": [{"line": 1, "column": 1}],
                        "path": ["query", "projects", "nodes", "jobs"],
                        "extensions": {
                            "code": "undefinedField",
                            "typeName": "Project",
                            "fieldName": "jobs",
                        },
                    }
                ]
            }
        )
    if shape == "forbidden":
        # Synthetic: a proxy or policy in front of /api/graphql refusing the token.
        return web.json_response({"message": "403 Forbidden"}, status=403)
    # An instance without the endpoint: Rails' routing 404 page.
    return web.Response(
        text="<html><body><h1>404</h1><p>The page could not be found.</p></body></html>",
        status=404,
        content_type="text/html",
    )


ANSWERS = {
    "forbidden": forbidden,
    "not_found": not_found,
    "rate_limit": rate_limit,
    "graphql_refused": graphql_refused,
}


def fault_match(sim: GitLabSim, kind: str, params: dict[str, Any]) -> str | None:
    """``project`` -> that project's paths (id and URL-encoded full path)."""
    if kind == "graphql_refused":
        return "^/api/graphql$"
    project = params.pop("project", None)
    if project is None:
        return None
    names = {quote(str(project), safe="")}
    for p in sim.projects.values():
        if str(project) in (str(p.id), p.path_with_namespace):
            names |= {str(p.id), quote(p.path_with_namespace, safe="")}
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    return rf"^/api/v4/projects/(?:{alternatives})(?:/|$)"
