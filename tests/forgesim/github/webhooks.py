"""``workflow_job`` webhook payloads and their signed, fire-and-forget delivery.

:func:`workflow_job_payload` builds the payload of one action (``queued``, ``waiting``,
``in_progress``, ``completed``); :class:`WebhookSender` posts it with GitHub's delivery
headers (``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-Hub-Signature-256``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from tests.forgesim.github.model import Job
    from tests.forgesim.github.state import GitHubSim


WORKFLOW_JOB_ACTIONS = ("queued", "waiting", "in_progress", "completed")


def workflow_job_payload(sim: GitHubSim, action: str, job: Job) -> dict[str, Any]:
    """The ``workflow_job`` delivery for ``action`` about ``job`` as it is now.

    Shapes from octokit/webhooks ``payload-examples/api.github.com/workflow_job/``:
    ``queued.payload.json``, ``waiting.payload.json`` (status ``waiting``, runner fields
    null, ``started_at`` = ``created_at``), ``queued.with-deployment.payload.json`` (a
    ``queued`` action whose job is still ``waiting``, with a top-level ``deployment``),
    ``in_progress.payload.json`` and ``completed.*.payload.json``."""
    repo = sim.repos[job.repo]
    payload: dict[str, Any] = {
        "action": action,
        "workflow_job": sim.job_json(job),
        "repository": sim.webhook_repo_json(repo),
        "sender": sim.user_json("octocat"),
    }
    if job.environment is not None and job.status == "waiting":
        payload["deployment"] = deployment_json(sim, job)
    return payload


def deployment_json(sim: GitHubSim, job: Job) -> dict[str, Any]:
    """The ``deployment`` object of ``queued.with-deployment.payload.json``."""
    api = f"{sim.root_url}/api/v3/repos/{job.repo}"
    deployment_id = job.id + 1_000_000
    created = sim.job_json(job)["created_at"]
    return {
        "url": f"{api}/deployments/{deployment_id}",
        "id": deployment_id,
        "node_id": f"DE_{deployment_id}",
        "task": "deploy",
        "original_environment": job.environment,
        "environment": job.environment,
        "description": None,
        "created_at": created,
        "updated_at": created,
        "statuses_url": f"{api}/deployments/{deployment_id}/statuses",
        "repository_url": api,
        "creator": sim.user_json("octocat"),
        "sha": "0" * 40,
        "ref": "main",
        "payload": {},
        "transient_environment": False,
        "production_environment": False,
        "performed_via_github_app": None,
    }


class WebhookSender:
    """Posts signed deliveries in the background; failures are ignored, as a forge does."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def send(self, url: str, secret: str, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        }
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
