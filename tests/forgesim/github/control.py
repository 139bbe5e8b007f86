"""Control endpoints of the GitHub simulator (``/_sim/...``: no token, never recorded)."""

from __future__ import annotations

import time

from aiohttp import web

from tests.forgesim.github.model import Job, Run
from tests.forgesim.github.state import SIM


async def control_create_job(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    full = f"{request.match_info['owner']}/{request.match_info['repo']}"
    try:
        body = await request.json()
        labels = [str(x) for x in body.get("labels", [])]
        duration = float(body.get("duration", 0))
        run_id = body.get("run_id")
        name = str(body.get("name", "build"))
    except (ValueError, TypeError, AttributeError):
        return web.json_response({"error": "want {labels, duration, run_id?}"}, status=400)
    async with sim.lock:
        sim.repo(full)
        now = time.time()
        if run_id is None:
            run = Run(sim.next_id(), full, now, now)
            sim.runs[run.id] = run
        else:
            found = sim.runs.get(int(run_id))
            if found is None or found.repo != full:
                return web.json_response({"error": "no such run"}, status=404)
            run = found
        job = Job(sim.next_id(), run.id, full, labels, duration, name, now)
        sim.jobs[job.id] = job
        run.job_ids.append(job.id)
        run.updated_at = now
        sim.emit("queued", job)
    return web.json_response({"id": job.id})


async def control_create_run(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    full = f"{request.match_info['owner']}/{request.match_info['repo']}"
    async with sim.lock:
        sim.repo(full)
        now = time.time()
        run = Run(sim.next_id(), full, now, now)
        sim.runs[run.id] = run
    return web.json_response({"id": run.id})


async def control_create_repo(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    async with sim.lock:
        repo = sim.repo(f"{request.match_info['owner']}/{request.match_info['repo']}")
    return web.json_response({"id": repo.id})


async def control_create_org_repos(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    org = request.match_info["org"]
    try:
        body = await request.json()
        names = [str(x) for x in body.get("repos", [])]
    except (ValueError, TypeError, AttributeError):
        return web.json_response({"error": "want {repos: [...]}"}, status=400)
    async with sim.lock:
        sim.orgs.setdefault(org, sim.next_id())
        ids = [sim.repo(f"{org}/{n}").id for n in names]
    return web.json_response({"ids": ids})


async def control_rate_limit(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        body = await request.json()
        if "limit" in body:
            sim.rate_limit = int(body["limit"])
        if "remaining" in body:
            sim.rate_used = sim.rate_limit - int(body["remaining"])
        if "reset_in" in body:
            sim.rate_reset = time.time() + float(body["reset_in"])
    except (ValueError, TypeError, AttributeError):
        return web.json_response({"error": "want {limit?, remaining?, reset_in?}"}, status=400)
    return web.json_response(sim.rate_headers())


async def control_state(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return web.json_response(
        {
            "jobs": [
                {
                    "id": j.id,
                    "repo": j.repo,
                    "status": j.status,
                    "labels": list(j.labels),
                    "runner_name": j.runner_name,
                }
                for j in sim.jobs.values()
            ],
            "runners": [
                {
                    "id": r.id,
                    "name": r.name,
                    "labels": list(r.labels),
                    "busy": r.busy,
                    "status": r.status,
                }
                for r in sim.runners.values()
            ],
            "requests": sim.request_count,
            "rate_limit_used": sim.rate_used,
        }
    )


async def control_webhook_target(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        body = await request.json()
        sim.webhook = (str(body["url"]), str(body["secret"]))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "want {url, secret}"}, status=400)
    return web.json_response({"ok": True})
