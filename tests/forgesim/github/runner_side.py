"""Runner-facing side of the GitHub simulator under ``/_runner/`` (docs/runner-contract.md).

GitHub's real runner protocol (broker, JIT config) is not simulated; the test image's
shims speak this small contract instead.
"""

from __future__ import annotations

import hmac
import secrets
import time

from aiohttp import web

from tests.forgesim.github.http import scoped_runners
from tests.forgesim.github.model import Runner
from tests.forgesim.github.state import SIM


def runner_by_secret(request: web.Request) -> Runner:
    sim = request.app[SIM]
    auth = request.headers.get("Authorization", "")
    secret = auth.removeprefix("RunnerToken ").strip()
    for runner in sim.runners.values():
        if secret and hmac.compare_digest(runner.secret, secret):
            return runner
    raise web.HTTPUnauthorized(reason="unknown runner")


async def runner_register(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        body = await request.json()
        token, name = str(body["token"]), str(body["name"])
        labels_raw = body.get("labels", "")
        labels = [x.strip() for x in str(labels_raw).split(",") if x.strip()]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"message": "bad request"}, status=400)
    async with sim.lock:
        reg = sim.reg_tokens.get(token)
        if reg is None or reg.expires_at < time.time():
            return web.json_response({"message": "bad registration token"}, status=401)
        scope = (reg.scope_kind, reg.scope)
        if any(r.name == name for r in scoped_runners(sim, scope)):
            return web.json_response({"message": "name taken"}, status=409)
        runner = Runner(
            id=sim.next_id(),
            name=name,
            labels=labels or ["self-hosted"],
            scope_kind=reg.scope_kind,
            scope=reg.scope,
            ephemeral=False,
            secret=secrets.token_hex(16),
        )
        sim.runners[runner.id] = runner
    return web.json_response({"runner_id": runner.id, "token": runner.secret}, status=201)


async def runner_acquire(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    async with sim.lock:
        runner = runner_by_secret(request)
        runner.status = "online"
        if runner.busy:
            return web.Response(status=204)
        candidates = sorted(
            (j for j in sim.jobs.values() if j.status == "queued" and sim.runner_serves(runner, j)),
            key=lambda j: j.id,
        )
        if not candidates:
            return web.Response(status=204)
        job = candidates[0]
        now = time.time()
        job.status, job.started_at = "in_progress", now
        job.runner_id, job.runner_name = runner.id, runner.name
        runner.busy, runner.job_id = True, job.id
        sim.runs[job.run_id].updated_at = now
        sim.emit("in_progress", job)
    return web.json_response({"job_id": job.id, "duration": job.duration})


async def runner_complete(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        body = await request.json()
        conclusion = str(body.get("conclusion", "success"))
    except (ValueError, TypeError, AttributeError):
        conclusion = "success"
    async with sim.lock:
        runner = runner_by_secret(request)
        job = sim.jobs.get(int(request.match_info["job_id"]))
        if job is None or job.runner_id != runner.id or job.status != "in_progress":
            return web.json_response({"message": "not your job"}, status=404)
        now = time.time()
        job.status, job.conclusion, job.completed_at = "completed", conclusion, now
        sim.runs[job.run_id].updated_at = now
        runner.busy, runner.job_id = False, None
        if runner.ephemeral:  # a JIT runner is gone after its one job, as on GitHub
            del sim.runners[runner.id]
        sim.emit("completed", job)
    return web.json_response({"ok": True})


async def runner_offline(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    async with sim.lock:
        runner_by_secret(request).status = "offline"
    return web.json_response({"ok": True})
