"""Control endpoints of the GitLab simulator (``/_sim/...``: no token, never recorded)."""

from __future__ import annotations

from aiohttp import web

from tests.forgesim.gitlab.http import error, json_body, sim_of, tag_list
from tests.forgesim.gitlab.model import STATUSES

MAX_BULK = 200_000


async def sim_add_job(request: web.Request) -> web.Response:
    sim = sim_of(request)
    body = await json_body(request)
    tags = tag_list(body.get("tags"))
    status = body.get("status", "pending")
    if tags is None or status not in STATUSES:
        return error(400, "want {tags: [str], duration: s, status?}")
    try:
        duration = float(body.get("duration", 0))
        pid = int(request.match_info["id"])
        count = int(body.get("count", 1))
    except (TypeError, ValueError):
        return error(400, "bad duration, count or project id")
    if not 1 <= count <= MAX_BULK:
        return error(400, f"count must be 1..{MAX_BULK}")
    name = str(body.get("name") or "")
    ids = [sim.add_job(pid, tags, duration, str(status), name).id for _ in range(count)]
    return web.json_response({"id": ids[0], "ids": ids})


async def sim_state(request: web.Request) -> web.Response:
    sim = sim_of(request)
    return web.json_response(
        {
            "jobs": [
                {
                    "id": j.id,
                    "project_id": j.project_id,
                    "status": j.status,
                    "tags": j.tags,
                    "runner_id": j.runner_id,
                }
                for j in sim.jobs.values()
            ],
            "runners": [
                {
                    "id": r.id,
                    "description": r.description,
                    "tags": r.tags,
                    "run_untagged": r.run_untagged,
                }
                for r in sim.runners.values()
            ],
            "requests": sim.request_count,
        }
    )


async def sim_add_group(request: web.Request) -> web.Response:
    sim = sim_of(request)
    body = await json_body(request)
    group = sim.add_group(str(body["path"]), body.get("parent_id"))
    return web.json_response({"id": group.id, "full_path": group.full_path})


async def sim_add_project(request: web.Request) -> web.Response:
    sim = sim_of(request)
    body = await json_body(request)
    project = sim.add_project(str(body["path"]), body.get("group_id"), body.get("id"))
    return web.json_response({"id": project.id, "path_with_namespace": project.path_with_namespace})


async def sim_add_runner(request: web.Request) -> web.Response:
    sim = sim_of(request)
    body = await json_body(request)
    tags = tag_list(body.get("tags")) or []
    runner = sim.add_runner(
        str(body.get("description", "")), tags, bool(body.get("run_untagged", False))
    )
    return web.json_response({"id": runner.id, "token": runner.token})


async def sim_set_job(request: web.Request) -> web.Response:
    sim = sim_of(request)
    body = await json_body(request)
    job = sim.jobs.get(int(request.match_info["id"]))
    if job is None or body.get("status") not in STATUSES:
        return error(404 if job is None else 400, "unknown job or status")
    job.status = str(body["status"])
    return web.json_response({"id": job.id, "status": job.status})
