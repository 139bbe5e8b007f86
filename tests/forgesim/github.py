"""A small GitHub (GHES-style) simulator for the GitHub provider's tests.

The REST API lives under ``/api/v3`` (so PyGithub's ``base_url`` is
``http://127.0.0.1:P/api/v3``), the runner-facing side under ``/_runner/`` exactly as in
``docs/runner-contract.md``, and the control endpoints under ``/_sim/`` (never recorded,
never faulted, no token).

API (token: ``Authorization: token T`` or ``Bearer T``; anything else is 401):

* ``GET /rate_limit`` (free), ``GET /repos/{o}/{r}``, ``GET /orgs/{org}``,
  ``GET /orgs/{org}/repos``;
* ``GET /repos/{o}/{r}/actions/runs?status=`` (``queued``/``in_progress``/``completed``),
  ``GET .../actions/runs/{id}``, ``GET .../actions/runs/{id}/jobs``,
  ``GET .../actions/jobs/{id}``;
* for ``/repos/{o}/{r}`` and ``/orgs/{org}``: ``GET actions/runners[?name=]``,
  ``GET|DELETE actions/runners/{id}`` (DELETE of a busy runner is 422),
  ``POST actions/runners/registration-token``, ``.../remove-token``,
  ``.../generate-jitconfig`` (409 when the name is taken in that scope).

Lists page with ``per_page`` (max 100) and ``page``, answer ``total_count`` and a
``Link`` header. Every API response (faulted ones included) carries ``x-ratelimit-*``
headers. GET answers carry a
weak ``ETag``; a matching ``If-None-Match`` gives 304, which (as on GitHub) does not use
the rate limit. Everything else except ``/rate_limit`` uses one request of the budget; when
it is spent the answer is 403 with ``x-ratelimit-remaining: 0``.

Runs: a run is ``queued`` while all its jobs are queued, ``in_progress`` once any job has
started and ``completed`` when all jobs are. Runner matching: a job's labels must all be
among the runner's labels (case-insensitive), and the job's repository must be in the
runner's scope (its repository, or a repository of its organisation).

Control endpoints:

* ``POST /_sim/repos/{owner}/{repo}/jobs`` ``{"labels": [...], "duration": s,
  "run_id"?: id, "name"?: str}`` -> ``{"id": job_id}``. Without ``run_id`` every job gets
  its own new run; repository (and run) are created as needed.
* ``POST /_sim/repos/{owner}/{repo}/runs`` -> ``{"id": run_id}``: an empty run, to put many
  jobs in (with ``run_id`` above).
* ``POST /_sim/repos/{owner}/{repo}`` -> ``{"id": repo_id}``: create a repository.
* ``POST /_sim/orgs/{org}/repos`` ``{"repos": ["name", ...]}`` -> ``{"ids": [...]}``:
  create repositories ``org/name`` (the organisation is created as needed).
* ``POST /_sim/rate-limit`` ``{"limit"?: n, "remaining"?: n, "reset_in"?: s}``: set the
  budget (for the poll-stretching tests).
* ``GET /_sim/state`` -> ``{"jobs": [{"id", "repo", "status", "labels", "runner_name"}],
  "runners": [{"id", "name", "labels", "busy", "status"}], "requests": n,
  "rate_limit_used": n}``.
* ``POST /_sim/webhook-target`` ``{"url": ..., "secret": ...}``: deliver signed
  ``workflow_job`` events (queued, in_progress, completed) there, fire-and-forget.
* ``POST /_sim/faults``: see :mod:`tests.forgesim.common`.

Standalone: ``python -m tests.forgesim.github --port P --token T`` (or :func:`serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.forgesim.common import SIM_KEY, Handler, RunningSim, SimBase, make_app

API = "/api/v3"
REGISTRATION_TOKEN_TTL_S = 3600


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Repo:
    id: int
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclasses.dataclass
class Run:
    id: int
    repo: str
    created_at: float
    updated_at: float
    job_ids: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Job:
    id: int
    run_id: int
    repo: str
    labels: list[str]
    duration: float
    name: str
    created_at: float
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None


@dataclasses.dataclass
class Runner:
    id: int
    name: str
    labels: list[str]
    scope_kind: str  # "repo" | "org"
    scope: str  # owner/repo or org
    ephemeral: bool
    secret: str
    busy: bool = False
    status: str = "offline"
    job_id: int | None = None


@dataclasses.dataclass
class RegistrationToken:
    scope_kind: str
    scope: str
    expires_at: float


class GitHubSim(SimBase):
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
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

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

    def user_json(self, login: str) -> dict[str, Any]:
        base = f"{self.root_url}{API}/users/{login}"
        return {
            "login": login,
            "id": abs(hash(login)) % 100000,
            "node_id": f"U_{login}",
            "avatar_url": f"{self.root_url}/avatars/{login}",
            "gravatar_id": "",
            "url": base,
            "html_url": f"{self.root_url}/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": "Organization" if login in self.orgs else "User",
            "site_admin": False,
        }

    def repo_json(self, repo: Repo) -> dict[str, Any]:
        base = f"{self.root_url}{API}/repos/{repo.full_name}"
        url_names = [
            "archive_url",
            "assignees_url",
            "blobs_url",
            "branches_url",
            "collaborators_url",
            "comments_url",
            "commits_url",
            "compare_url",
            "contents_url",
            "contributors_url",
            "deployments_url",
            "downloads_url",
            "events_url",
            "forks_url",
            "git_commits_url",
            "git_refs_url",
            "git_tags_url",
            "hooks_url",
            "issue_comment_url",
            "issue_events_url",
            "issues_url",
            "keys_url",
            "labels_url",
            "languages_url",
            "merges_url",
            "milestones_url",
            "notifications_url",
            "pulls_url",
            "releases_url",
            "stargazers_url",
            "statuses_url",
            "subscribers_url",
            "subscription_url",
            "tags_url",
            "teams_url",
            "trees_url",
        ]
        body: dict[str, Any] = {n: f"{base}/{n.removesuffix('_url')}" for n in url_names}
        body.update(
            id=repo.id,
            node_id=f"R_{repo.id}",
            name=repo.name,
            full_name=repo.full_name,
            owner=self.user_json(repo.owner),
            private=True,
            html_url=f"{self.root_url}/{repo.full_name}",
            description=None,
            fork=False,
            url=base,
        )
        return body

    def webhook_repo_json(self, repo: Repo) -> dict[str, Any]:
        """The larger repository object of webhook payloads (``repository-webhooks``)."""
        body = self.repo_json(repo)
        host = self.root_url.split("://", 1)[-1]
        body.update(
            archived=False,
            disabled=False,
            clone_url=f"{self.root_url}/{repo.full_name}.git",
            git_url=f"git://{host}/{repo.full_name}.git",
            ssh_url=f"git@{host}:{repo.full_name}.git",
            svn_url=f"{self.root_url}/{repo.full_name}",
            default_branch="main",
            created_at=_iso(0),
            updated_at=_iso(0),
            pushed_at=_iso(0),
            homepage=None,
            language=None,
            license=None,
            mirror_url=None,
            has_downloads=True,
            has_issues=True,
            has_pages=False,
            has_projects=True,
            has_wiki=True,
            forks=0,
            forks_count=0,
            open_issues=0,
            open_issues_count=0,
            size=0,
            stargazers_count=0,
            watchers=0,
            watchers_count=0,
        )
        return body

    def run_json(self, run: Run) -> dict[str, Any]:
        repo = self.repos[run.repo]
        base = f"{self.root_url}{API}/repos/{run.repo}/actions/runs/{run.id}"
        status = self.run_status(run)
        return {
            "id": run.id,
            "name": "CI",
            "node_id": f"WFR_{run.id}",
            "head_branch": "main",
            "head_sha": "0" * 40,
            "path": ".github/workflows/ci.yml",
            "display_title": f"run {run.id}",
            "run_number": run.id,
            "run_attempt": 1,
            "event": "push",
            "status": status,
            "conclusion": "success" if status == "completed" else None,
            "workflow_id": 1,
            "url": base,
            "html_url": f"{self.root_url}/{run.repo}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.updated_at),
            "jobs_url": f"{base}/jobs",
            "logs_url": f"{base}/logs",
            "check_suite_url": f"{self.root_url}{API}/repos/{run.repo}/check-suites/{run.id}",
            "artifacts_url": f"{base}/artifacts",
            "cancel_url": f"{base}/cancel",
            "rerun_url": f"{base}/rerun",
            "workflow_url": f"{self.root_url}{API}/repos/{run.repo}/actions/workflows/1",
            "head_commit": None,
            "repository": self.repo_json(repo),
            "head_repository": self.repo_json(repo),
        }

    def job_json(self, job: Job) -> dict[str, Any]:
        api = f"{self.root_url}{API}/repos/{job.repo}"
        return {
            "id": job.id,
            "run_id": job.run_id,
            "run_url": f"{api}/actions/runs/{job.run_id}",
            "run_attempt": 1,
            "node_id": f"CR_{job.id}",
            "head_sha": "0" * 40,
            "head_branch": "main",
            "workflow_name": "CI",
            "url": f"{api}/actions/jobs/{job.id}",
            "html_url": f"{self.root_url}/{job.repo}/actions/runs/{job.run_id}/job/{job.id}",
            "status": job.status,
            "conclusion": job.conclusion,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at or job.created_at),
            "completed_at": None if job.completed_at is None else _iso(job.completed_at),
            "name": job.name,
            "steps": [],
            "check_run_url": f"{api}/check-runs/{job.id}",
            "labels": list(job.labels),
            "runner_id": job.runner_id,
            "runner_name": job.runner_name,
            "runner_group_id": None if job.runner_id is None else 1,
            "runner_group_name": None if job.runner_id is None else "Default",
        }

    @staticmethod
    def runner_json(runner: Runner) -> dict[str, Any]:
        return {
            "id": runner.id,
            "name": runner.name,
            "os": "Linux",
            "status": runner.status,
            "busy": runner.busy,
            "ephemeral": runner.ephemeral,
            "runner_group_id": 1,
            "labels": [
                {"id": i + 1, "name": label, "type": "custom"}
                for i, label in enumerate(runner.labels)
            ],
        }

    # -- webhooks ---------------------------------------------------------------------

    def emit(self, action: str, job: Job) -> None:
        """Deliver a signed ``workflow_job`` event in the background (failures ignored)."""
        if self.webhook is None:
            return
        url, secret = self.webhook
        repo = self.repos[job.repo]
        payload = {
            "action": action,
            "workflow_job": self.job_json(job),
            "repository": self.webhook_repo_json(repo),
            "sender": self.user_json("octocat"),
        }
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": "workflow_job",
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


SIM: web.AppKey[GitHubSim] = web.AppKey("github_sim", GitHubSim)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": "https://docs.github.com/rest"}, status=status
    )


# ---------------------------------------------------------------------------------------
# The API middleware: token, rate limit, ETag, x-ratelimit-* headers.


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM]
    # URLs in bodies and JIT configs use the address the client used (the port is random).
    sim.root_url = f"{request.scheme}://{request.host}"
    if not request.path.startswith(API + "/"):
        return await handler(request)
    auth = request.headers.get("Authorization", "")
    if auth not in {f"token {sim.token}", f"Bearer {sim.token}"}:
        response: web.StreamResponse = _error(401, "Bad credentials")
        response.headers.update(sim.rate_headers())
        return response
    free = request.path == f"{API}/rate_limit"
    if not free and sim.rate_remaining <= 0:
        response = _error(403, "API rate limit exceeded for user.")
        response.headers.update(sim.rate_headers())
        return response
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    if request.method == "GET" and response.status == 200 and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        etag = 'W/"' + hashlib.sha1(body, usedforsecurity=False).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            not_modified = web.Response(status=304, headers={"ETag": etag})
            not_modified.headers.update(sim.rate_headers())
            return not_modified
        response.headers["ETag"] = etag
    if not free:
        sim.rate_used += 1
    response.headers.update(sim.rate_headers())
    return response


def _page(request: web.Request, items: Sequence[Any]) -> tuple[list[Any], dict[str, str]]:
    """Slice ``items`` by ``per_page``/``page`` and build the ``Link`` header."""
    try:
        per_page = max(1, min(int(request.query.get("per_page", "30")), 100))
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        raise web.HTTPUnprocessableEntity(reason="bad paging parameters") from None
    last = max(1, -(-len(items) // per_page))
    chosen = list(items[(page - 1) * per_page : page * per_page])
    base = f"{request.app[SIM].root_url}{request.path}"

    def link(n: int, rel: str) -> str:
        query = {**request.query, "per_page": str(per_page), "page": str(n)}
        return f'<{base}?{urlencode(query)}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    return chosen, ({"Link": ", ".join(links)} if links else {})


def _repo_of(request: web.Request) -> Repo:
    sim = request.app[SIM]
    full = f"{request.match_info['owner']}/{request.match_info['repo']}"
    if full not in sim.repos:
        raise web.HTTPNotFound(reason="Not Found")
    return sim.repos[full]


def _runner_scope(request: web.Request) -> tuple[str, str]:
    """``("repo", "o/r")`` or ``("org", "org")`` for a runner endpoint; 404 if unknown."""
    sim = request.app[SIM]
    if "org" in request.match_info:
        org = request.match_info["org"]
        if org not in sim.orgs:
            raise web.HTTPNotFound(reason="Not Found")
        return "org", org
    return "repo", _repo_of(request).full_name


# ---------------------------------------------------------------------------------------
# API handlers


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
    return web.json_response(request.app[SIM].repo_json(_repo_of(request)))


async def get_org(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    org = request.match_info["org"]
    if org not in sim.orgs:
        return _error(404, "Not Found")
    return web.json_response({**sim.user_json(org), "id": sim.orgs[org]})


async def org_repos(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    org = request.match_info["org"]
    if org not in sim.orgs:
        return _error(404, "Not Found")
    repos = sorted((r for r in sim.repos.values() if r.owner == org), key=lambda r: r.id)
    chosen, headers = _page(request, repos)
    return web.json_response([sim.repo_json(r) for r in chosen], headers=headers)


async def list_runs(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    repo = _repo_of(request)
    status = request.query.get("status")
    runs = [r for r in sim.runs.values() if r.repo == repo.full_name]
    if status:
        runs = [r for r in runs if sim.run_status(r) == status]
    runs.sort(key=lambda r: -r.id)  # newest first, as GitHub
    chosen, headers = _page(request, runs)
    body = {"total_count": len(runs), "workflow_runs": [sim.run_json(r) for r in chosen]}
    return web.json_response(body, headers=headers)


def _run_of(request: web.Request) -> Run:
    sim = request.app[SIM]
    repo = _repo_of(request)
    run = sim.runs.get(int(request.match_info["run_id"]))
    if run is None or run.repo != repo.full_name:
        raise web.HTTPNotFound(reason="Not Found")
    return run


async def get_run(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].run_json(_run_of(request)))


async def run_jobs(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    run = _run_of(request)
    jobs = [sim.jobs[j] for j in run.job_ids]
    chosen, headers = _page(request, jobs)
    body = {"total_count": len(jobs), "jobs": [sim.job_json(j) for j in chosen]}
    return web.json_response(body, headers=headers)


async def get_job(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    repo = _repo_of(request)
    job = sim.jobs.get(int(request.match_info["job_id"]))
    if job is None or job.repo != repo.full_name:
        return _error(404, "Not Found")
    return web.json_response(sim.job_json(job))


def _scoped_runners(sim: GitHubSim, scope: tuple[str, str]) -> list[Runner]:
    return [r for r in sim.runners.values() if (r.scope_kind, r.scope) == scope]


async def list_runners(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    runners = _scoped_runners(sim, _runner_scope(request))
    if "name" in request.query:
        runners = [r for r in runners if r.name == request.query["name"]]
    chosen, headers = _page(request, runners)
    body = {"total_count": len(runners), "runners": [sim.runner_json(r) for r in chosen]}
    return web.json_response(body, headers=headers)


def _runner_of(request: web.Request) -> Runner:
    sim = request.app[SIM]
    scope = _runner_scope(request)
    try:
        runner = sim.runners.get(int(request.match_info["runner_id"]))
    except ValueError:
        runner = None
    if runner is None or (runner.scope_kind, runner.scope) != scope:
        raise web.HTTPNotFound(reason="Not Found")
    return runner


async def get_runner(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].runner_json(_runner_of(request)))


async def delete_runner(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    async with sim.lock:  # serialised with /_runner/acquire: busy is decided atomically
        runner = _runner_of(request)
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


def _new_token(sim: GitHubSim, scope: tuple[str, str], prefix: str) -> web.Response:
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
    return _new_token(sim, _runner_scope(request), "A")


async def remove_token(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return _new_token(sim, _runner_scope(request), "R")


async def generate_jitconfig(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    scope = _runner_scope(request)
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
        return _error(422, "Invalid request: name, runner_group_id and labels are required")
    async with sim.lock:
        if any(r.name == name for r in _scoped_runners(sim, scope)):
            return _error(409, "Already exists - A runner with the same name already exists")
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


# ---------------------------------------------------------------------------------------
# Runner-facing side (docs/runner-contract.md)


def _runner_by_secret(request: web.Request) -> Runner:
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
        if any(r.name == name for r in _scoped_runners(sim, scope)):
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
        runner = _runner_by_secret(request)
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
        runner = _runner_by_secret(request)
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
        _runner_by_secret(request).status = "offline"
    return web.json_response({"ok": True})


# ---------------------------------------------------------------------------------------
# Control endpoints


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


def create_app(token: str) -> web.Application:
    """The simulator application; ``token`` is the only API token it accepts."""
    sim = GitHubSim(token)
    app = make_app(sim)
    app.middlewares.append(_api_middleware)
    app[SIM] = sim
    # make_app stored the same object under SIM_KEY for the shared middleware.
    assert app[SIM_KEY] is sim

    async def _cleanup(_app: web.Application) -> None:
        await sim.close()

    async def _rate_headers_everywhere(request: web.Request, response: web.StreamResponse) -> None:
        # Also on answers the shared fault middleware produced (it runs outside ours).
        if request.path.startswith(API + "/"):
            for key, value in sim.rate_headers().items():
                response.headers.setdefault(key, value)

    app.on_cleanup.append(_cleanup)
    app.on_response_prepare.append(_rate_headers_everywhere)
    r = app.router
    r.add_get(f"{API}/rate_limit", rate_limit)
    r.add_get(f"{API}/orgs/{{org}}", get_org)
    r.add_get(f"{API}/orgs/{{org}}/repos", org_repos)
    r.add_get(f"{API}/repos/{{owner}}/{{repo}}", get_repo)
    repo_actions = f"{API}/repos/{{owner}}/{{repo}}/actions"
    r.add_get(f"{repo_actions}/runs", list_runs)
    r.add_get(f"{repo_actions}/runs/{{run_id:\\d+}}", get_run)
    r.add_get(f"{repo_actions}/runs/{{run_id:\\d+}}/jobs", run_jobs)
    r.add_get(f"{repo_actions}/jobs/{{job_id:\\d+}}", get_job)
    for actions in (repo_actions, f"{API}/orgs/{{org}}/actions"):
        r.add_get(f"{actions}/runners", list_runners)
        r.add_post(f"{actions}/runners/registration-token", registration_token)
        r.add_post(f"{actions}/runners/remove-token", remove_token)
        r.add_post(f"{actions}/runners/generate-jitconfig", generate_jitconfig)
        r.add_get(f"{actions}/runners/{{runner_id:\\d+}}", get_runner)
        r.add_delete(f"{actions}/runners/{{runner_id:\\d+}}", delete_runner)
    r.add_post("/_runner/register", runner_register)
    r.add_post("/_runner/acquire", runner_acquire)
    r.add_post("/_runner/jobs/{job_id:\\d+}/complete", runner_complete)
    r.add_post("/_runner/offline", runner_offline)
    r.add_post("/_sim/repos/{owner}/{repo}/jobs", control_create_job)
    r.add_post("/_sim/repos/{owner}/{repo}/runs", control_create_run)
    r.add_post("/_sim/repos/{owner}/{repo}", control_create_repo)
    r.add_post("/_sim/orgs/{org}/repos", control_create_org_repos)
    r.add_post("/_sim/rate-limit", control_rate_limit)
    r.add_get("/_sim/state", control_state)
    r.add_post("/_sim/webhook-target", control_webhook_target)
    return app


async def serve(port: int, token: str) -> None:
    """Serve the simulator on 127.0.0.1:``port`` until cancelled."""
    async with RunningSim(create_app(token), port) as sim:
        print(f"forgesim github listening on {sim.url}", flush=True)  # noqa: T201
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.forgesim.github --port P --token T``."""
    parser = argparse.ArgumentParser(prog="forgesim-github")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.token))


if __name__ == "__main__":
    main()
