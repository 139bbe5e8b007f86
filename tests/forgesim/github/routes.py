"""REST handlers of the GitHub simulator (``/api/v3``): rate limit, repos, orgs, runs,
jobs and the runner endpoints of both scopes (repository and organisation)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime

from aiohttp import web

from tests.forgesim.github.http import (
    error,
    org_of,
    page_of,
    repo_of,
    run_of,
    runner_of,
    runner_scope,
    scoped_runners,
)
from tests.forgesim.github.model import REGISTRATION_TOKEN_TTL_S, RegistrationToken, Runner
from tests.forgesim.github.state import SIM, GitHubSim


async def rate_limit(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    remaining = sim.rate_remaining
    core = {
        "limit": sim.rate_limit,
        "remaining": remaining,
        "reset": int(sim.rate_reset),
        "used": sim.rate_limit - remaining,
        "resource": "core",
    }
    search = {"limit": 30, "remaining": 30, "reset": int(time.time()) + 60, "used": 0}
    return web.json_response({"resources": {"core": core, "search": search}, "rate": core})


async def get_repo(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].repo_json(repo_of(request)))


async def get_org(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    org = org_of(request)
    return web.json_response({**sim.user_json(org), "id": sim.orgs[org]})


async def org_repos(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    org = org_of(request)
    repos = sorted((r for r in sim.repos.values() if r.owner == org), key=lambda r: r.id)
    chosen, headers = page_of(request, repos)
    return web.json_response([sim.repo_json(r) for r in chosen], headers=headers)


async def list_runs(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    repo = repo_of(request)
    status = request.query.get("status")
    runs = [r for r in sim.runs.values() if r.repo == repo.full_name]
    if status:
        runs = [r for r in runs if sim.run_status(r) == status]
    runs.sort(key=lambda r: -r.id)  # newest first, as GitHub
    chosen, headers = page_of(request, runs)
    body = {"total_count": len(runs), "workflow_runs": [sim.run_json(r) for r in chosen]}
    return web.json_response(body, headers=headers)


async def get_run(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].run_json(run_of(request)))


async def run_jobs(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    run = run_of(request)
    jobs = [sim.jobs[j] for j in run.job_ids]
    chosen, headers = page_of(request, jobs)
    body = {"total_count": len(jobs), "jobs": [sim.job_json(j) for j in chosen]}
    return web.json_response(body, headers=headers)


async def get_job(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    repo = repo_of(request)
    job = sim.jobs.get(int(request.match_info["job_id"]))
    if job is None or job.repo != repo.full_name:
        return error(404, "Not Found")
    return web.json_response(sim.job_json(job))


async def list_runners(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    runners = scoped_runners(sim, runner_scope(request))
    if "name" in request.query:
        runners = [r for r in runners if r.name == request.query["name"]]
    chosen, headers = page_of(request, runners)
    body = {"total_count": len(runners), "runners": [sim.runner_json(r) for r in chosen]}
    return web.json_response(body, headers=headers)


async def get_runner(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].runner_json(runner_of(request)))


async def delete_runner(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    async with sim.lock:  # serialised with /_runner/acquire: busy is decided atomically
        runner = runner_of(request)
        if runner.busy:
            return web.json_response(
                {
                    "message": f'Bad request - Runner "{runner.name}" is still running a job"',
                    "documentation_url": "https://docs.github.com/rest",
                },
                status=422,
            )
        del sim.runners[runner.id]
    return web.Response(status=204)


def new_token(sim: GitHubSim, scope: tuple[str, str], prefix: str) -> web.Response:
    token = prefix + secrets.token_hex(12).upper()
    expires = time.time() + REGISTRATION_TOKEN_TTL_S
    if prefix == "A":  # registration tokens; remove tokens are accepted and forgotten
        sim.reg_tokens[token] = RegistrationToken(scope[0], scope[1], expires)
    return web.json_response(
        {"token": token, "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()},
        status=201,
    )


async def registration_token(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return new_token(sim, runner_scope(request), "A")


async def remove_token(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return new_token(sim, runner_scope(request), "R")


async def generate_jitconfig(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    scope = runner_scope(request)
    try:
        body = await request.json()
        name = body["name"]
        group = body["runner_group_id"]
        labels = body["labels"]
        ok = (
            isinstance(name, str)
            and name
            and isinstance(group, int)
            and isinstance(labels, list)
            and 1 <= len(labels) <= 100
            and all(isinstance(x, str) for x in labels)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        return error(422, "Invalid request: name, runner_group_id and labels are required")
    async with sim.lock:
        if any(r.name == name for r in scoped_runners(sim, scope)):
            return error(409, "Already exists - A runner with the same name already exists")
        runner = Runner(
            id=sim.next_id(),
            name=name,
            labels=list(labels),
            scope_kind=scope[0],
            scope=scope[1],
            ephemeral=True,
            secret=secrets.token_hex(16),
        )
        sim.runners[runner.id] = runner
    config = {"url": sim.root_url, "runner_id": runner.id, "name": name, "token": runner.secret}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    return web.json_response(
        {"runner": sim.runner_json(runner), "encoded_jit_config": encoded}, status=201
    )
