"""REST handlers of the GitLab simulator (``/api/v4``): user, projects, jobs, groups, runners.

Each handler checks the token, consults the fault book where GitLab can refuse (see
:mod:`.faults`) and answers GitLab's entity for the object.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.forgesim.gitlab.http import (
    admin_only,
    as_int,
    auth,
    base_url,
    error,
    json_body,
    paginate,
    tag_list,
)
from tests.forgesim.gitlab.model import STATUSES, Runner


async def get_user(request: web.Request) -> web.Response:
    sim = auth(request)
    return web.json_response(
        {
            "id": 1,
            "username": "sim",
            "name": "Sim",
            "state": "active",
            "is_admin": sim.admin,
            "web_url": "http://gitlab.sim/sim",
        }
    )


async def get_project(request: web.Request) -> web.Response:
    sim = auth(request)
    return web.json_response(sim.project_entity(sim.find_project(request.match_info["id"])))


def _scopes(request: web.Request) -> set[str]:
    scopes = set(request.query.getall("scope[]", [])) | set(request.query.getall("scope", []))
    unknown = scopes - set(STATUSES)
    if unknown:
        raise web.HTTPBadRequest(
            text='{"error":"scope does not have a valid value"}', content_type="application/json"
        )
    return scopes


async def list_project_jobs(request: web.Request) -> web.Response:
    sim = auth(request)
    headers = sim.jobs_rate_check()  # before authorisation, as lib/api/ci/jobs.rb
    project = sim.find_project(request.match_info["id"])
    scopes = _scopes(request)
    jobs = sorted(
        (
            j
            for j in sim.jobs.values()
            if j.project_id == project.id and (not scopes or j.status in scopes)
        ),
        key=lambda j: -j.id,
    )
    base = base_url(request)
    return paginate(
        request,
        jobs,
        with_total=False,
        extra_headers=headers,
        render=lambda j: sim.job_entity(j, base),
    )


async def get_project_job(request: web.Request) -> web.Response:
    sim = auth(request)
    project = sim.find_project(request.match_info["id"])
    job = sim.jobs.get(int(request.match_info["job_id"]))
    if job is None or job.project_id != project.id:
        return error(404, "404 Not found")
    return web.json_response(sim.job_entity(job, base_url(request)))


async def get_group(request: web.Request) -> web.Response:
    sim = auth(request)
    return web.json_response(sim.group_entity(sim.find_group(request.match_info["id"])))


async def list_group_projects(request: web.Request) -> web.Response:
    sim = auth(request)
    group = sim.find_group(request.match_info["id"])
    deep = request.query.get("include_subgroups", "false").lower() == "true"
    group_ids = set(sim.descendants(group.id)) if deep else {group.id}
    projects = sorted(
        (p for p in sim.projects.values() if p.group_id in group_ids), key=lambda p: p.id
    )
    return paginate(request, [sim.project_entity(p) for p in projects])


async def list_subgroups(request: web.Request) -> web.Response:
    sim = auth(request)
    group = sim.find_group(request.match_info["id"])
    children = sorted(
        (g for g in sim.groups.values() if g.parent_id == group.id), key=lambda g: g.id
    )
    return paginate(request, [sim.group_entity(g) for g in children])


async def create_user_runner(request: web.Request) -> web.Response:
    """``POST /user/runners`` (the new runner creation workflow)."""
    sim = auth(request)
    body = await json_body(request)
    runner_type = body.get("runner_type")
    tags = tag_list(body.get("tag_list"))
    owner: dict[str, Any] = {}
    if runner_type == "instance_type":
        if not sim.admin:
            return error(403, "403 Forbidden")
    elif runner_type == "group_type":
        group = sim.groups.get(as_int(body.get("group_id")))
        if group is None:
            return error(400, "group_id is missing or not found")
        owner["group_id"] = group.id
    elif runner_type == "project_type":
        project = sim.projects.get(as_int(body.get("project_id")))
        if project is None:
            return error(400, "project_id is missing or not found")
        owner["project_id"] = project.id
    else:
        return error(400, "runner_type does not have a valid value")
    if tags is None:
        return error(400, "tag_list is invalid")
    run_untagged = body.get("run_untagged", True)
    if not isinstance(run_untagged, bool):
        return error(400, "run_untagged is invalid")
    runner = sim.add_runner(
        str(body.get("description") or ""), tags, run_untagged, runner_type=runner_type, **owner
    )
    return web.json_response(
        {"id": runner.id, "token": runner.token, "token_expires_at": None}, status=201
    )


def _filter_runners(request: web.Request, runners: list[Runner]) -> list[Runner]:
    wanted_type = request.query.get("type")
    wanted_tags = set(tag_list(request.query.get("tag_list")) or [])
    return [
        r
        for r in runners
        if (not wanted_type or r.runner_type == wanted_type) and wanted_tags <= set(r.tags)
    ]


async def list_runners(request: web.Request) -> web.Response:
    sim = auth(request)
    runners = _filter_runners(request, sorted(sim.runners.values(), key=lambda r: r.id))
    return paginate(request, [sim.runner_entity(r) for r in runners])


async def list_all_runners(request: web.Request) -> web.Response:
    sim = admin_only(request)
    runners = _filter_runners(request, sorted(sim.runners.values(), key=lambda r: r.id))
    return paginate(request, [sim.runner_entity(r) for r in runners])


async def get_runner(request: web.Request) -> web.Response:
    sim = auth(request)
    return web.json_response(sim.runner_details(sim.find_runner(request.match_info["id"])))


async def update_runner(request: web.Request) -> web.Response:
    """``PUT /runners/:id``: only ``paused`` is modelled (what the autoscaler changes)."""
    sim = auth(request)
    runner = sim.find_runner(request.match_info["id"])
    body = await json_body(request)
    if "paused" in body:
        value = body["paused"]
        if isinstance(value, str):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            return error(400, "paused is invalid")
        runner.paused = value
    return web.json_response(sim.runner_details(runner))


async def delete_runner(request: web.Request) -> web.Response:
    """Deleted even while it runs a job, as GitLab does; the job keeps its runner id."""
    sim = auth(request)
    runner = sim.find_runner(request.match_info["id"])
    del sim.runners[runner.id]
    return web.Response(status=204)


async def list_runner_jobs(request: web.Request) -> web.Response:
    sim = auth(request)
    runner = sim.find_runner(request.match_info["id"])
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        return error(400, "status does not have a valid value")
    sort = request.query.get("sort", "desc")
    jobs = sorted(
        (
            j
            for j in sim.jobs.values()
            if j.runner_id == runner.id and (status is None or j.status == status)
        ),
        key=lambda j: j.id,
        reverse=sort != "asc",
    )
    base = base_url(request)
    return paginate(request, [sim.job_with_project(j, base) for j in jobs], with_total=False)
