"""The GitHub simulator's state: the model operations and the primary rate limit.

Handlers (``routes``, ``runner_side``, ``control``) are thin functions over one
:class:`GitHubSim`; JSON shapes come from :mod:`.entities`, webhook deliveries from
:mod:`.webhooks`, faults from :mod:`.faults`.
"""

from __future__ import annotations

import itertools
import time

from aiohttp import web

from tests.forgesim.common import SimBase
from tests.forgesim.github.entities import Entities
from tests.forgesim.github.model import Job, RegistrationToken, Repo, Run, Runner
from tests.forgesim.github.webhooks import WebhookSender, workflow_job_payload


class GitHubSim(SimBase, Entities):
    """All simulator state. Mutated only under ``self.lock`` by the handlers."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.rate_limit = 5000
        self.rate_used = 0
        self.rate_reset = time.time() + 3600
        self.repos: dict[str, Repo] = {}
        self.orgs: dict[str, int] = {}
        self.runs: dict[int, Run] = {}
        self.jobs: dict[int, Job] = {}
        self.runners: dict[int, Runner] = {}
        self.reg_tokens: dict[str, RegistrationToken] = {}
        self.webhook: tuple[str, str] | None = None
        self.root_url = ""  # from the latest request (the port is random)
        self._ids = itertools.count(1000)
        self.hooks = WebhookSender()

    def next_id(self) -> int:
        return next(self._ids)

    # -- rate limit -------------------------------------------------------------------

    @property
    def rate_remaining(self) -> int:
        if time.time() >= self.rate_reset:
            self.rate_used = 0
            self.rate_reset = time.time() + 3600
        return max(self.rate_limit - self.rate_used, 0)

    def rate_headers(self) -> dict[str, str]:
        remaining = self.rate_remaining
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(self.rate_limit - remaining),
            "x-ratelimit-reset": str(int(self.rate_reset)),
            "x-ratelimit-resource": "core",
        }

    # -- model helpers ----------------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        if full_name not in self.repos:
            owner, name = full_name.split("/", 1)
            self.repos[full_name] = Repo(self.next_id(), owner, name)
        return self.repos[full_name]

    def run_status(self, run: Run) -> str:
        statuses = {self.jobs[j].status for j in run.job_ids}
        if not statuses or statuses == {"queued"}:
            return "queued"
        if statuses == {"completed"}:
            return "completed"
        return "in_progress"

    def runner_serves(self, runner: Runner, job: Job) -> bool:
        if runner.scope_kind == "repo":
            in_scope = job.repo == runner.scope
        else:
            in_scope = job.repo.split("/", 1)[0] == runner.scope
        have = {label.lower() for label in runner.labels}
        return in_scope and all(label.lower() in have for label in job.labels)

    # -- JSON shapes (checked against the OpenAPI excerpt by the tests) ---------------

    def emit(self, action: str, job: Job) -> None:
        """Deliver a signed ``workflow_job`` event in the background (failures ignored)."""
        if self.webhook is None:
            return
        url, secret = self.webhook
        self.hooks.send(url, secret, "workflow_job", workflow_job_payload(self, action, job))

    async def close(self) -> None:
        await self.hooks.close()


SIM: web.AppKey[GitHubSim] = web.AppKey("github_sim", GitHubSim)
