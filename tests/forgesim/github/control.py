"""Control endpoints of the GitHub simulator (``/_sim/...``: no token, never recorded)."""

from __future__ import annotations

import time

from aiohttp import web

from tests.forgesim.github.model import Job, Run
from tests.forgesim.github.state import SIM
from tests.forgesim.github.webhooks import WORKFLOW_JOB_ACTIONS, workflow_job_payload

MAX_BULK = 200_000


async def control_create_job(request: web.Request) -> web.Response:
    """``{labels, duration, run_id?, name?, status?: "queued"|"waiting", environment?,
    count?}``: ``waiting`` is a deployment job awaiting approval (its run is ``waiting``;
    webhooks ``queued`` with a ``deployment`` then ``waiting``, as the octokit/webhooks
    examples show). ``count`` creates that many jobs at once (each in its own run unless
    ``run_id``; no webhooks then), for huge-page tests."""
    sim = request.app[SIM]
    full = f"{request.match_info['owner']}/{request.match_info['repo']}"
    try:
        body = await request.json()
        labels = [str(x) for x in body.get("labels", [])]
        duration = float(body.get("duration", 0))
        run_id = body.get("run_id")
        name = str(body.get("name", "build"))
        status = str(body.get("status", "queued"))
        environment = body.get("environment")
        count = int(body.get("count", 1))
    except (ValueError, TypeError, AttributeError):
        return web.json_response({"error": "want {labels, duration, run_id?}"}, status=400)
    if status not in {"queued", "waiting"} or not 1 <= count <= MAX_BULK:
        return web.json_response({"error": "status queued|waiting, 1 <= count"}, status=400)
    if status == "waiting" and environment is None:
        environment = "production"
    ids: list[int] = []
    async with sim.lock:
        sim.repo(full)
        now = time.time()
        found = None if run_id is None else sim.runs.get(int(run_id))
        if run_id is not None and (found is None or found.repo != full):
            return web.json_response({"error": "no such run"}, status=404)
        for _ in range(count):
            run = found or Run(sim.next_id(), full, now, now)
            sim.runs[run.id] = run
            job = Job(sim.next_id(), run.id, full, labels, duration, name, now, status=status)
            job.environment = None if environment is None else str(environment)
            sim.jobs[job.id] = job
            run.job_ids.append(job.id)
            run.updated_at = now
            ids.append(job.id)
        if count == 1:
            sim.emit("queued", job)
            if status == "waiting":
                sim.emit("waiting", job)
    return web.json_response({"id": ids[0], "ids": ids})


async def control_approve_job(request: web.Request) -> web.Response:
    """``POST /_sim/jobs/{id}/approve``: a reviewer approves the deployment; the job is
    ``queued`` from now on. No webhook is sent (octokit/webhooks has no example of what
    follows an approval; ``/_sim/jobs/{id}/webhook`` sends one on demand)."""
    sim = request.app[SIM]
    async with sim.lock:
        job = sim.jobs.get(int(request.match_info["id"]))
        if job is None or job.status != "waiting":
            return web.json_response({"error": "no waiting job with that id"}, status=404)
        job.status = "queued"
        sim.runs[job.run_id].updated_at = time.time()
    return web.json_response({"id": job.id, "status": job.status})


async def control_job_webhook(request: web.Request) -> web.Response:
    """``POST /_sim/jobs/{id}/webhook {"action": ...}``: deliver that action for the job as
    it is now (to the ``/_sim/webhook-target``), and answer the payload too."""
    sim = request.app[SIM]
    try:
        action = str((await request.json())["action"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "want {action}"}, status=400)
    job = sim.jobs.get(int(request.match_info["id"]))
    if job is None or action not in WORKFLOW_JOB_ACTIONS:
        return web.json_response({"error": "unknown job or action"}, status=404)
    sim.emit(action, job)
    return web.json_response(workflow_job_payload(sim, action, job))


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
            "token_exchanges": sum(app.exchanges for app in sim.apps.values()),
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
