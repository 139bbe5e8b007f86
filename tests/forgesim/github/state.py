"""The GitHub simulator's state: the model operations and the primary rate limit.

Handlers (``routes``, ``runner_side``, ``control``) are thin functions over one
:class:`GitHubSim`; JSON shapes come from :mod:`.entities`, webhook deliveries from
:mod:`.webhooks`, faults from :mod:`.faults`.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque

from aiohttp import web

from tests.forgesim import stats
from tests.forgesim.common import SimBase
from tests.forgesim.github.entities import Entities
from tests.forgesim.github.model import App, Job, RegistrationToken, Repo, Run, Runner
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
        self.secondary_times: deque[float] = deque()  # every API request, 304s too
        self.apps: dict[str, App] = {}  # by App id (see .apps)
        self.installation_tokens: dict[str, float] = {}  # token -> expiry (epoch)

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
        """``queued`` while all jobs are, ``waiting`` while a deployment job awaits
        approval and nothing runs yet, ``completed`` when all are, else ``in_progress``."""
        statuses = {self.jobs[j].status for j in run.job_ids}
        if not statuses or statuses == {"queued"}:
            return "queued"
        if statuses == {"completed"}:
            return "completed"
        if statuses <= {"queued", "waiting"}:
            return "waiting"
        return "in_progress"

    def runner_serves(self, runner: Runner, job: Job) -> bool:
        if runner.scope_kind == "repo":
            in_scope = job.repo == runner.scope
        else:
            in_scope = job.repo.split("/", 1)[0] == runner.scope
        have = {label.lower() for label in runner.labels}
        return in_scope and all(label.lower() in have for label in job.labels)

    def classify(self, method: str, path: str) -> str:
        return classify(method, path)

    def emit(self, action: str, job: Job) -> None:
        """Deliver a signed ``workflow_job`` event in the background (failures ignored)."""
        if self.webhook is None:
            return
        url, secret = self.webhook
        self.hooks.send(url, secret, "workflow_job", workflow_job_payload(self, action, job))

    async def close(self) -> None:
        await self.hooks.close()
        await super().close()


SIM: web.AppKey[GitHubSim] = web.AppKey("github_sim", GitHubSim)

_SCOPE = re.compile(r"^/api/v3/(?:repos/[^/]+/[^/]+|repositories/\d+|orgs/[^/]+|organizations/\d+)")


def classify(method: str, path: str) -> str:
    """The stats class of a GitHub request (see :mod:`tests.forgesim.stats`).

    Listing runners is counted as a sweep (the provider also reads ``busy`` from it)."""
    if path.startswith("/_runner/"):
        return stats.RUNNER_SIDE
    if path == "/api/v3/rate_limit":
        return stats.IDENTITY
    scope = _SCOPE.match(path)
    if scope is None:
        return stats.OTHER
    rest = path[scope.end() :]
    if rest.startswith("/actions/runs"):
        return stats.JOB_POLL
    if rest.startswith("/actions/jobs/"):
        return stats.JOB_LOOKUP
    if rest in {"/actions/runners/generate-jitconfig", "/actions/runners/registration-token"}:
        return stats.REGISTRATION
    if rest == "/actions/runners/remove-token" or (method == "DELETE" and "/runners/" in rest):
        return stats.DELETION
    if rest == "/actions/runners":
        return stats.SWEEP
    if rest.startswith("/actions/runners/"):
        return stats.ACTIVITY
    return stats.SCOPE
