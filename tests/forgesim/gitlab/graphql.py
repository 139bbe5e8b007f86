"""GitLab GraphQL (``POST /api/graphql``) as far as the provider uses it."""

from __future__ import annotations

import re

from aiohttp import web

from tests.forgesim.gitlab.http import auth, json_body
from tests.forgesim.gitlab.model import JSON, Job, iso
from tests.forgesim.gitlab.state import GitLabSim

_STATUS_LITERAL = re.compile(r"statuses\s*:\s*\[?\s*([A-Z_,\s]+?)\s*\]?\s*[,)]")


def _graphql_statuses(query: str, variables: JSON) -> set[str]:
    raw = variables.get("statuses")
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list):
        return {str(s).lower() for s in raw}
    match = _STATUS_LITERAL.search(query)
    if match:
        return {s.strip().lower() for s in match.group(1).split(",") if s.strip()}
    return set()


def _graphql_node(sim: GitLabSim, job: Job) -> JSON:
    project = sim.projects[job.project_id]
    return {
        "id": f"gid://gitlab/Ci::Build/{job.id}",
        "name": job.name,
        "status": job.status.upper(),
        "tags": list(job.tags),
        "createdAt": iso(job.created_at),
        "project": {
            "id": f"gid://gitlab/Project/{project.id}",
            "fullPath": project.path_with_namespace,
        },
        "pipeline": {"id": f"gid://gitlab/Ci::Pipeline/{job.pipeline_id}"},
    }


async def graphql(request: web.Request) -> web.Response:
    sim = auth(request)
    body = await json_body(request)
    query = body.get("query")
    variables = body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        return web.json_response({"errors": [{"message": "query is required"}]}, status=400)
    if "jobs" not in query:
        return web.json_response({"errors": [{"message": "sim: only Query.jobs is served"}]})
    statuses = _graphql_statuses(query, variables)
    jobs = (
        []
        if not sim.admin
        else sorted(
            (j for j in sim.jobs.values() if not statuses or j.status in statuses),
            key=lambda j: -j.id,
        )
    )
    after = int(variables["after"]) if str(variables.get("after") or "").isdigit() else 0
    page = jobs[after : after + 100]
    has_next = after + 100 < len(jobs)
    return web.json_response(
        {
            "data": {
                "jobs": {
                    "pageInfo": {
                        "hasNextPage": has_next,
                        "endCursor": str(after + 100) if has_next else None,
                    },
                    "nodes": [_graphql_node(sim, j) for j in page],
                }
            }
        }
    )
