"""The GitLab simulator's state: the model operations and GitLab's ``jobs_index`` limiter.

Handlers (``routes``, ``runner_side``, ``graphql``, ``control``) are thin functions over
one :class:`GitLabSim`; JSON shapes come from :mod:`.entities`, faults from :mod:`.faults`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from typing import Any, NoReturn

from aiohttp import web

from tests.forgesim import stats
from tests.forgesim.common import SimBase
from tests.forgesim.gitlab.entities import Entities
from tests.forgesim.gitlab.model import JOBS_PER_MINUTE, Group, Job, Project, Runner
from tests.forgesim.gitlab.shapes import jobs_limiter_429


class GitLabSim(SimBase, Entities):
    """All simulator state; the handler modules are thin functions over it."""

    def __init__(self, token: str, *, admin: bool = True) -> None:
        super().__init__()
        self.token = token
        self.admin = admin
        self.groups: dict[int, Group] = {}
        self.projects: dict[int, Project] = {}
        self.jobs: dict[int, Job] = {}
        self.runners: dict[int, Runner] = {}
        self.jobs_per_minute = JOBS_PER_MINUTE
        self._job_list_times: deque[float] = deque()
        self._next = {"group": 100, "project": 1000, "job": 1, "runner": 1, "pipeline": 1}

    def next_id(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind]

    # -- model operations ---------------------------------------------------------------

    def add_group(self, path: str, parent_id: int | None) -> Group:
        parent = self.groups.get(parent_id) if parent_id is not None else None
        if parent_id is not None and parent is None:
            raise web.HTTPNotFound(
                text='{"message":"404 Group Not Found"}', content_type="application/json"
            )
        full = f"{parent.full_path}/{path}" if parent else path
        group = Group(self.next_id("group"), path, full, parent_id)
        self.groups[group.id] = group
        return group

    def add_project(self, path: str, group_id: int | None, pid: int | None = None) -> Project:
        group = self.groups.get(group_id) if group_id is not None else None
        if group_id is not None and group is None:
            raise web.HTTPNotFound(
                text='{"message":"404 Group Not Found"}', content_type="application/json"
            )
        namespace = group.full_path if group else "sim"
        project = Project(pid or self.next_id("project"), path, f"{namespace}/{path}", group_id)
        self.projects[project.id] = project
        return project

    def ensure_project(self, pid: int) -> Project:
        return self.projects.get(pid) or self.add_project(f"project-{pid}", None, pid)

    def add_job(self, pid: int, tags: list[str], duration: float, status: str, name: str) -> Job:
        self.ensure_project(pid)
        jid = self.next_id("job")
        job = Job(jid, pid, self.next_id("pipeline"), tags, duration, name or f"job-{jid}")
        job.status = status
        self.jobs[jid] = job
        return job

    def add_runner(
        self, description: str, tags: list[str], run_untagged: bool, **kw: Any
    ) -> Runner:
        rid = self.next_id("runner")
        runner = Runner(rid, description, tags, run_untagged, f"glrt-{secrets.token_hex(10)}", **kw)
        self.runners[rid] = runner
        return runner

    def find_project(self, ref: str) -> Project:
        for project in self.projects.values():
            if ref in (str(project.id), project.path_with_namespace):
                return project
        raise web.HTTPNotFound(
            text='{"message":"404 Project Not Found"}', content_type="application/json"
        )

    def find_group(self, ref: str) -> Group:
        for group in self.groups.values():
            if ref in (str(group.id), group.full_path):
                return group
        raise web.HTTPNotFound(
            text='{"message":"404 Group Not Found"}', content_type="application/json"
        )

    def find_runner(self, ref: str) -> Runner:
        runner = self.runners.get(int(ref)) if ref.isdigit() else None
        if runner is None:
            raise web.HTTPNotFound(
                text='{"message":"404 Runner Not Found"}', content_type="application/json"
            )
        return runner

    def runner_by_token(self, token: object) -> Runner:
        for runner in self.runners.values():
            if isinstance(token, str) and secrets.compare_digest(runner.token, token):
                return runner
        raise web.HTTPForbidden(text='{"message":"403 Forbidden"}', content_type="application/json")

    def descendants(self, group_id: int) -> list[int]:
        found = [group_id]
        for group in self.groups.values():
            if group.parent_id == group_id:
                found.extend(self.descendants(group.id))
        return found

    def count_job_list(self) -> None:
        """One request against ``jobs_index`` (GitLab counts refused ones too)."""
        self._job_list_times.append(time.monotonic())

    def jobs_rate_check(self) -> dict[str, str]:
        """GitLab's ``jobs_index`` limiter (``lib/api/ci/jobs.rb``: checked first).

        By default the sim's friendly variant: ``RateLimit-*`` headers on every answer
        and 429 + ``Retry-After``. While a ``gitlab_limiter`` fault is live, GitLab's
        real one: ``ApplicationRateLimiter.throttled?`` counts every request, 200s carry
        no rate-limit header, and the 429 is ``shapes.jobs_limiter_429``."""
        now = time.monotonic()
        while self._job_list_times and now - self._job_list_times[0] >= 60:
            self._job_list_times.popleft()
        real = self.faults.active("gitlab_limiter")
        if real is not None:
            limit = int(real.params.get("per_minute", self.jobs_per_minute))
            self._job_list_times.append(now)
            if len(self._job_list_times) > limit:
                wait = int(60 - (now - self._job_list_times[0])) + 1
                raise_429(jobs_limiter_429(wait if real.params.get("retry_after") else None))
            return {}
        reset = int(time.time()) + 60
        if len(self._job_list_times) >= self.jobs_per_minute:
            wait = int(60 - (now - self._job_list_times[0])) + 1
            raise web.HTTPTooManyRequests(
                text='{"message":"This endpoint has been requested too many times."}',
                content_type="application/json",
                headers={
                    "Retry-After": str(wait),
                    "RateLimit-Limit": str(self.jobs_per_minute),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset),
                },
            )
        self._job_list_times.append(now)
        return {
            "RateLimit-Limit": str(self.jobs_per_minute),
            "RateLimit-Remaining": str(self.jobs_per_minute - len(self._job_list_times)),
            "RateLimit-Reset": str(reset),
        }

    def classify(self, method: str, path: str) -> str:
        return classify(method, path)


def raise_429(answer: web.Response) -> NoReturn:
    body = answer.body if isinstance(answer.body, bytes) else b""
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-type"}
    raise web.HTTPTooManyRequests(
        text=body.decode(), content_type="application/json", headers=headers
    )


def classify(method: str, path: str) -> str:
    """The stats class of a GitLab request (see :mod:`tests.forgesim.stats`)."""
    p = path.removeprefix("/api/v4")
    if path == "/api/graphql" or (method == "GET" and _PROJECT_JOBS.match(p)):
        return stats.JOB_POLL
    if method == "GET" and _PROJECT_JOB.match(p):
        return stats.JOB_LOOKUP
    if p in {"/runners/verify", "/jobs/request"} or (method == "PUT" and p.startswith("/jobs/")):
        return stats.RUNNER_SIDE
    if p == "/user/runners":
        return stats.REGISTRATION
    if _RUNNER.match(p):
        return stats.ACTIVITY if method == "GET" else stats.DELETION
    if p in {"/runners", "/runners/all"}:
        return stats.SWEEP
    if p.startswith(("/projects", "/groups")):
        return stats.SCOPE
    if p == "/user":
        return stats.IDENTITY
    return stats.OTHER


_PROJECT_JOBS = re.compile(r"^/projects/[^/]+/jobs$")
_PROJECT_JOB = re.compile(r"^/projects/[^/]+/jobs/\d+$")
_RUNNER = re.compile(r"^/runners/\d+(?:/jobs)?$")


SIM: web.AppKey[GitLabSim] = web.AppKey("gitlab_sim", GitLabSim)
