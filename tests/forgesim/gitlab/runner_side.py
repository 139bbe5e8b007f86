"""Runner-facing endpoints of the GitLab simulator (docs/runner-contract.md).

``POST /runners/verify``, ``POST /jobs/request`` (201 job / 204) and ``PUT /jobs/:id``
with the job token; a bad runner token is 403, as in ``lib/api/ci/runner.rb``.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from tests.forgesim.gitlab.http import error, json_body, sim_of
from tests.forgesim.gitlab.model import JSON, Job, Runner, now_utc
from tests.forgesim.gitlab.state import GitLabSim


async def runner_verify(request: web.Request) -> web.Response:
    sim = sim_of(request)
    body = await json_body(request)
    runner = sim.runner_by_token(body.get("token"))
    runner.contacted_at = now_utc()
    return web.json_response({"id": runner.id, "token": runner.token, "token_expires_at": None})


def _reaches(sim: GitLabSim, runner: Runner, job: Job) -> bool:
    """A project runner serves its project only, a group runner its group's projects
    (subgroups included), an instance runner every project: as on GitLab."""
    if runner.runner_type == "project_type":
        return runner.project_id == job.project_id
    if runner.runner_type == "group_type":
        group = sim.projects[job.project_id].group_id
        return runner.group_id is not None and group in sim.descendants(runner.group_id)
    return True


def _matches(sim: GitLabSim, runner: Runner, job: Job) -> bool:
    if not _reaches(sim, runner, job):
        return False
    if not job.tags:
        return runner.run_untagged
    return set(job.tags) <= set(runner.tags)


def _job_payload(sim: GitLabSim, job: Job, runner: Runner) -> JSON:
    project = sim.projects[job.project_id]
    return {
        "id": job.id,
        "token": job.token,
        "allow_git_fetch": True,
        "job_info": {
            "id": job.id,
            "name": job.name,
            "stage": "test",
            "project_id": project.id,
            "project_name": project.path,
            "pipeline_id": job.pipeline_id,
            "project_full_path": project.path_with_namespace,
        },
        "git_info": {
            "repo_url": f"http://gitlab.sim/{project.path_with_namespace}.git",
            "ref": "main",
            "sha": "0" * 40,
            "before_sha": "0" * 40,
            "ref_type": "branch",
            "refspecs": [],
            "depth": 20,
        },
        "runner_info": {"timeout": 3600, "runner_session_url": None},
        "variables": [
            {"key": "SIM_JOB_DURATION", "value": str(job.duration), "public": True},
            {"key": "CI_JOB_ID", "value": str(job.id), "public": True},
            {"key": "CI_RUNNER_ID", "value": str(runner.id), "public": True},
        ],
        "steps": [
            {
                "name": "script",
                "script": [f"sleep {job.duration}"],
                "timeout": 3600,
                "when": "on_success",
                "allow_failure": False,
            }
        ],
        "image": None,
        "services": [],
        "artifacts": [],
        "cache": [],
        "credentials": [],
        "dependencies": [],
        "features": {},
    }


async def jobs_request(request: web.Request) -> web.Response:
    """Hand the oldest pending job this runner's tags allow; it becomes ``running``."""
    sim = sim_of(request)
    body = await json_body(request)
    runner = sim.runner_by_token(body.get("token"))
    runner.contacted_at = now_utc()
    if runner.paused:  # GitLab hands a paused runner no jobs
        return web.Response(status=204)
    async with sim.lock:
        for job in sorted(sim.jobs.values(), key=lambda j: j.id):
            if job.status == "pending" and _matches(sim, runner, job):
                job.status, job.runner_id, job.started_at = "running", runner.id, now_utc()
                job.token = f"glcbt-{secrets.token_hex(10)}"
                return web.json_response(_job_payload(sim, job, runner), status=201)
    return web.Response(status=204)


async def job_update(request: web.Request) -> web.Response:
    """``PUT /jobs/:id`` with the job token: ``success``/``failed`` ends the job."""
    sim = sim_of(request)
    body = await json_body(request)
    job = sim.jobs.get(int(request.match_info["job_id"]))
    token = body.get("token")
    if (
        job is None
        or not job.token
        or not isinstance(token, str)
        or not secrets.compare_digest(job.token, token)
    ):
        return error(403, "403 Forbidden")
    state = body.get("state")
    if state in ("success", "failed", "canceled"):
        job.status, job.finished_at = str(state), now_utc()
    elif state not in (None, "running"):
        return error(400, "state does not have a valid value")
    return web.json_response({"id": job.id, "status": job.status})
