"""A tiny stand-in for the forge simulator's runner-facing endpoints.

Only what docs/runner-contract.md lists under "Forge simulator, runner-facing side", so the
test image's shims can be exercised before ``tests/forgesim`` lands. It records every call
in ``calls`` as ``(method, path, status)`` for the tests to assert on.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import deque
from typing import Any

from aiohttp import web


class StubForge:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.gitlab_tokens: set[str] = set()
        self.gitlab_jobs: deque[dict[str, Any]] = deque()
        self.job_states: dict[int, str] = {}
        self.registration_tokens: set[str] = set()
        self.runners: dict[str, dict[str, Any]] = {}  # secret -> runner
        self.github_jobs: deque[dict[str, Any]] = deque()
        self.completed: dict[int, str] = {}
        self.offline: list[int] = []
        self._ids = itertools.count(100)
        self.url = ""
        self._runner: web.AppRunner | None = None

    # --- set-up helpers --------------------------------------------------------------

    def add_gitlab_job(self, duration: float) -> int:
        job_id = next(self._ids)
        self.gitlab_jobs.append({"id": job_id, "duration": duration})
        return job_id

    def add_github_job(self, duration: float) -> int:
        job_id = next(self._ids)
        self.github_jobs.append({"job_id": job_id, "duration": duration})
        return job_id

    def jit_config(self, name: str) -> str:
        runner_id = next(self._ids)
        secret = f"secret-{runner_id}"
        self.runners[secret] = {"id": runner_id, "name": name, "ephemeral": True}
        config = {"url": self.url, "runner_id": runner_id, "name": name, "token": secret}
        return base64.b64encode(json.dumps(config).encode()).decode()

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.calls if method is None or m == method]

    # --- server ------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/api/v4/runners/verify", self._verify)
        app.router.add_post("/api/v4/jobs/request", self._request)
        app.router.add_put("/api/v4/jobs/{id}", self._update)
        app.router.add_post("/_runner/register", self._register)
        app.router.add_post("/_runner/acquire", self._acquire)
        app.router.add_post("/_runner/jobs/{id}/complete", self._complete)
        app.router.add_post("/_runner/offline", self._offline)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        self.calls.append((request.method, request.path, response.status))
        return response

    # --- GitLab ----------------------------------------------------------------------------

    async def _verify(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("token") not in self.gitlab_tokens:
            return web.json_response({"message": "403 Forbidden"}, status=403)
        return web.json_response({"id": 1, "token": body["token"], "token_expires_at": None})

    async def _request(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("token") not in self.gitlab_tokens:
            return web.json_response({"message": "403 Forbidden"}, status=403)
        if not self.gitlab_jobs:
            return web.Response(status=204)
        job = self.gitlab_jobs.popleft()
        self.job_states[job["id"]] = "running"
        return web.json_response(
            {
                # nested "id"/"token" first, to prove the shim reads the top-level ones
                "job_info": {"id": -1, "token": "not-this", "name": "test", "project_id": 7},
                "id": job["id"],
                "token": f"job-token-{job['id']}",
                "variables": [
                    {"key": "CI_JOB_ID", "value": str(job["id"]), "public": True},
                    {"key": "SIM_JOB_DURATION", "value": str(job["duration"]), "public": True},
                ],
            },
            status=201,
        )

    async def _update(self, request: web.Request) -> web.Response:
        job_id = int(request.match_info["id"])
        body = await request.json()
        if body.get("token") != f"job-token-{job_id}":
            return web.json_response({"message": "403 Forbidden"}, status=403)
        self.job_states[job_id] = body["state"]
        return web.json_response({})

    # --- GitHub ----------------------------------------------------------------------------

    def _runner_of(self, request: web.Request) -> dict[str, Any] | None:
        header = request.headers.get("Authorization", "")
        return self.runners.get(header.removeprefix("RunnerToken "))

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("token") not in self.registration_tokens:
            return web.json_response({"message": "bad token"}, status=401)
        if any(r["name"] == body.get("name") for r in self.runners.values()):
            return web.json_response({"message": "name taken"}, status=409)
        runner_id = next(self._ids)
        secret = f"secret-{runner_id}"
        self.runners[secret] = {
            "id": runner_id,
            "name": body["name"],
            "labels": body.get("labels", ""),
            "ephemeral": False,
        }
        return web.json_response({"runner_id": runner_id, "token": secret}, status=201)

    async def _acquire(self, request: web.Request) -> web.Response:
        runner = self._runner_of(request)
        if runner is None:
            return web.json_response({"message": "unknown runner"}, status=401)
        if not self.github_jobs:
            return web.Response(status=204)
        job = self.github_jobs.popleft()
        runner["job"] = job["job_id"]
        return web.json_response(job)

    async def _complete(self, request: web.Request) -> web.Response:
        runner = self._runner_of(request)
        if runner is None:
            return web.json_response({"message": "unknown runner"}, status=401)
        body = await request.json()
        self.completed[int(request.match_info["id"])] = body.get("conclusion", "")
        return web.json_response({})

    async def _offline(self, request: web.Request) -> web.Response:
        runner = self._runner_of(request)
        if runner is None:
            return web.json_response({"message": "unknown runner"}, status=401)
        self.offline.append(runner["id"])
        return web.json_response({})
