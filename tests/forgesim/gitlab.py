"""GitLab forge simulator: the REST/GraphQL subset the provider uses, plus the runner side.

Built with :func:`tests.forgesim.common.make_app`, so every forge request is recorded and
``POST /_sim/faults`` works. API endpoints (under ``/api/v4`` unless noted; token in
``PRIVATE-TOKEN`` or ``Authorization: Bearer``, wrong/missing -> 401):

* ``GET /user``; ``GET /projects/:id`` (id or URL-encoded path);
  ``GET /projects/:id/jobs?scope[]=..`` (id DESC, Link-header pagination, **no X-Total**,
  as GitLab's jobs API); ``GET /projects/:id/jobs/:job_id``;
  a ``RateLimit-*`` header set on the jobs list, and 429 + ``Retry-After`` above
  ``jobs_per_minute`` (600, GitLab's default ``project_jobs_api_rate_limit``).
* ``GET /groups/:id``, ``GET /groups/:id/projects?include_subgroups=true``,
  ``GET /groups/:id/subgroups`` (paginated, with X-Total).
* ``POST /user/runners`` -> 201 ``{id, token: glrt-.., token_expires_at: null}``;
  ``GET /runners`` / ``GET /runners/all`` (admin only, else 403), ``GET /runners/:id``,
  ``DELETE /runners/:id`` (204; a runner running a job is deleted too, like GitLab),
  ``GET /runners/:id/jobs?status=&order_by=id&sort=asc|desc``.
* ``POST /api/graphql``: ``jobs(statuses: ...)`` for an admin token (empty for non-admins,
  as GitLab). The query text is not parsed; ``variables.statuses`` (or the literal
  statuses in the query) and ``variables.after`` are honoured, 100 nodes a page.
* Runner side (docs/runner-contract.md): ``POST /runners/verify``, ``POST /jobs/request``
  (201 job / 204), ``PUT /jobs/:id`` with the job token. Bad runner token -> 403.

Control endpoints (never recorded, no token):

* ``POST /_sim/projects/{id}/jobs`` ``{"tags": [...], "duration": s, "status"?: "pending"|
  "created", "name"?}`` -> ``{"id": job_id}`` (creates project ``id`` if needed).
* ``GET /_sim/state`` -> ``{"jobs": [{id, project_id, status, tags, runner_id}],
  "runners": [{id, description, tags, run_untagged}], "requests": n}``.
* ``POST /_sim/faults`` (common.py).
* ``POST /_sim/groups`` ``{"path": "name", "parent_id"?: id}`` -> ``{"id", "full_path"}``.
* ``POST /_sim/projects`` ``{"id"?: n, "path": "name", "group_id"?: g}`` ->
  ``{"id", "path_with_namespace"}`` (without a group the namespace is ``sim``).
* ``POST /_sim/runners`` ``{"description", "tags"?, "run_untagged"?}`` -> ``{"id", "token"}``:
  a runner registered by "someone else" (for ownership tests).
* ``POST /_sim/jobs/{id}`` ``{"status": ...}``: set a job's status directly.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.forgesim.common import SimBase, make_app

JSON = dict[str, Any]
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
JOBS_PER_MINUTE = 600
STATUSES = [
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass
class Group:
    id: int
    path: str
    full_path: str
    parent_id: int | None


@dataclasses.dataclass
class Project:
    id: int
    path: str
    path_with_namespace: str
    group_id: int | None
    created_at: datetime = dataclasses.field(default_factory=_now)


@dataclasses.dataclass
class Job:
    id: int
    project_id: int
    pipeline_id: int
    tags: list[str]
    duration: float
    name: str
    status: str = "pending"
    runner_id: int | None = None
    token: str = ""
    created_at: datetime = dataclasses.field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclasses.dataclass
class Runner:
    id: int
    description: str
    tags: list[str]
    run_untagged: bool
    token: str
    runner_type: str = "instance_type"
    group_id: int | None = None
    project_id: int | None = None
    created_at: datetime = dataclasses.field(default_factory=_now)
    contacted_at: datetime | None = None
    paused: bool = False


class GitLabSim(SimBase):
    """All simulator state. Handlers below are thin functions over it."""

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

    def jobs_rate_check(self) -> dict[str, str]:
        """GitLab's ``jobs_index`` limiter: RateLimit-* headers, 429 above the limit."""
        now = time.monotonic()
        while self._job_list_times and now - self._job_list_times[0] >= 60:
            self._job_list_times.popleft()
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

    # -- entities ---------------------------------------------------------------------

    def project_entity(self, project: Project) -> JSON:
        return {
            "id": project.id,
            "name": project.path,
            "path": project.path,
            "path_with_namespace": project.path_with_namespace,
            "name_with_namespace": project.path_with_namespace.replace("/", " / "),
            "description": "",
            "created_at": _iso(project.created_at),
            "namespace": {
                "id": project.group_id or 1,
                "full_path": project.path_with_namespace.rsplit("/", 1)[0],
            },
            "web_url": f"http://gitlab.sim/{project.path_with_namespace}",
        }

    def group_entity(self, group: Group) -> JSON:
        return {
            "id": group.id,
            "name": group.path,
            "path": group.path,
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "web_url": f"http://gitlab.sim/groups/{group.full_path}",
        }

    def pipeline_entity(self, job: Job) -> JSON:
        return {
            "id": job.pipeline_id,
            "iid": job.pipeline_id,
            "project_id": job.project_id,
            "sha": "0" * 40,
            "ref": "main",
            "status": job.status,
            "source": "push",
            "created_at": _iso(job.created_at),
            "updated_at": _iso(job.created_at),
            "web_url": f"http://gitlab.sim/-/pipelines/{job.pipeline_id}",
        }

    def job_entity(self, job: Job, base: str) -> JSON:
        """``Entities::Ci::Job`` (the fields the sim knows)."""
        runner = self.runners.get(job.runner_id) if job.runner_id else None
        ended = job.finished_at or (_now() if job.started_at else None)
        duration = (ended - job.started_at).total_seconds() if job.started_at and ended else None
        return {
            "id": job.id,
            "status": job.status,
            "stage": "test",
            "name": job.name,
            "ref": "main",
            "tag": False,
            "coverage": None,
            "allow_failure": False,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "erased_at": None,
            "duration": duration,
            "queued_duration": None,
            "user": {"id": 1, "username": "sim"},
            "commit": {"id": "0" * 40},
            "pipeline": self.pipeline_entity(job),
            "web_url": f"{base}/-/jobs/{job.id}",
            "artifacts": [],
            "runner": self.runner_entity(runner) if runner else None,
            "artifacts_expire_at": None,
            "archived": False,
            "tag_list": list(job.tags),
        }

    def job_with_project(self, job: Job, base: str) -> JSON:
        """``Entities::Ci::JobBasicWithProject`` for ``/runners/:id/jobs``."""
        entity = {
            k: v
            for k, v in self.job_entity(job, base).items()
            if k not in {"runner", "artifacts", "artifacts_expire_at", "archived", "tag_list"}
        }
        project = self.projects[job.project_id]
        entity["project"] = {
            k: v
            for k, v in self.project_entity(project).items()
            if k
            in {
                "id",
                "description",
                "name",
                "name_with_namespace",
                "path",
                "path_with_namespace",
                "created_at",
            }
        }
        return entity

    def runner_busy(self, runner: Runner) -> bool:
        return any(j.runner_id == runner.id and j.status == "running" for j in self.jobs.values())

    def runner_entity(self, runner: Runner) -> JSON:
        online = (
            runner.contacted_at is not None
            and (_now() - runner.contacted_at).total_seconds() < 7200
        )
        status = (
            "online"
            if online
            else ("never_contacted" if runner.contacted_at is None else "offline")
        )
        return {
            "id": runner.id,
            "description": runner.description,
            "ip_address": None,
            "active": not runner.paused,
            "paused": runner.paused,
            "is_shared": runner.runner_type == "instance_type",
            "runner_type": runner.runner_type,
            "name": None,
            "online": online,
            "created_by": {"id": 1, "username": "sim", "name": "Sim", "state": "active"},
            "created_at": _iso(runner.created_at),
            "status": status,
            "job_execution_status": "active" if self.runner_busy(runner) else "idle",
        }

    def runner_details(self, runner: Runner) -> JSON:
        projects = [self.projects[runner.project_id]] if runner.project_id in self.projects else []
        groups = [self.groups[runner.group_id]] if runner.group_id in self.groups else []
        return {
            **self.runner_entity(runner),
            "tag_list": list(runner.tags),
            "run_untagged": runner.run_untagged,
            "locked": False,
            "maximum_timeout": None,
            "access_level": "not_protected",
            "version": None,
            "revision": None,
            "platform": None,
            "architecture": None,
            "contacted_at": _iso(runner.contacted_at),
            "maintenance_note": None,
            "projects": [self.project_entity(p) for p in projects],
            "groups": [
                {"id": g.id, "name": g.path, "web_url": self.group_entity(g)["web_url"]}
                for g in groups
            ],
        }


SIM: web.AppKey[GitLabSim] = web.AppKey("gitlab_sim", GitLabSim)


# ---------------------------------------------------------------------------------------
# helpers


def _sim(request: web.Request) -> GitLabSim:
    return request.app[SIM]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _auth(request: web.Request) -> GitLabSim:
    """GitLab's API token check: ``PRIVATE-TOKEN`` or ``Authorization: Bearer``."""
    sim = _sim(request)
    given = request.headers.get("PRIVATE-TOKEN", "")
    bearer = request.headers.get("Authorization", "")
    if not given and bearer.lower().startswith("bearer "):
        given = bearer[7:]
    if not given or not secrets.compare_digest(given.encode(), sim.token.encode()):
        raise web.HTTPUnauthorized(
            text='{"message":"401 Unauthorized"}', content_type="application/json"
        )
    return sim


def _admin(request: web.Request) -> GitLabSim:
    sim = _auth(request)
    if not sim.admin:
        raise web.HTTPForbidden(text='{"message":"403 Forbidden"}', content_type="application/json")
    return sim


async def _body(request: web.Request) -> JSON:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error":"invalid JSON"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error":"want an object"}', content_type="application/json")
    return body


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(request.query.get(name, default))))
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error":"{name} is invalid"}}', content_type="application/json"
        ) from None


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _paginate(
    request: web.Request,
    items: Sequence[JSON],
    *,
    with_total: bool = True,
    extra_headers: dict[str, str] | None = None,
) -> web.Response:
    """GitLab offset pagination: ``Link`` (next/prev/first[/last]) and ``X-*`` headers."""
    per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    page = _int_param(request, "page", 1, 1, 1_000_000)
    start = (page - 1) * per_page
    chunk = list(items[start : start + per_page])
    has_next = start + per_page < len(items)
    total_pages = max(1, -(-len(items) // per_page))
    raw_path = request.raw_path.split("?", 1)[0]  # keeps %2F in project paths
    params = [(k, v) for k, v in request.query.items() if k != "page"]

    def link(p: int, rel: str) -> str:
        query = urlencode([*params, ("page", str(p))])
        return f'<{_base(request)}{raw_path}?{query}>; rel="{rel}"'

    links = [link(page + 1, "next")] if has_next else []
    if page > 1:
        links.append(link(page - 1, "prev"))
    links.append(link(1, "first"))
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(page + 1) if has_next else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
        **(extra_headers or {}),
    }
    if with_total:
        links.append(link(total_pages, "last"))
        headers.update({"X-Total": str(len(items)), "X-Total-Pages": str(total_pages)})
    headers["Link"] = ", ".join(links)
    return web.json_response(chunk, headers=headers)


# ---------------------------------------------------------------------------------------
# REST API handlers


async def get_user(request: web.Request) -> web.Response:
    sim = _auth(request)
    return web.json_response(
        {
            "id": 1,
            "username": "sim",
            "name": "Sim",
            "state": "active",
            "is_admin": sim.admin,
            "web_url": "http://gitlab.sim/sim",
        }
    )


async def get_project(request: web.Request) -> web.Response:
    sim = _auth(request)
    return web.json_response(sim.project_entity(sim.find_project(request.match_info["id"])))


def _scopes(request: web.Request) -> set[str]:
    scopes = set(request.query.getall("scope[]", [])) | set(request.query.getall("scope", []))
    unknown = scopes - set(STATUSES)
    if unknown:
        raise web.HTTPBadRequest(
            text='{"error":"scope does not have a valid value"}', content_type="application/json"
        )
    return scopes


async def list_project_jobs(request: web.Request) -> web.Response:
    sim = _auth(request)
    project = sim.find_project(request.match_info["id"])
    scopes = _scopes(request)
    headers = sim.jobs_rate_check()
    jobs = sorted(
        (
            j
            for j in sim.jobs.values()
            if j.project_id == project.id and (not scopes or j.status in scopes)
        ),
        key=lambda j: -j.id,
    )
    base = _base(request)
    return _paginate(
        request, [sim.job_entity(j, base) for j in jobs], with_total=False, extra_headers=headers
    )


async def get_project_job(request: web.Request) -> web.Response:
    sim = _auth(request)
    project = sim.find_project(request.match_info["id"])
    job = sim.jobs.get(int(request.match_info["job_id"]))
    if job is None or job.project_id != project.id:
        return _error(404, "404 Not found")
    return web.json_response(sim.job_entity(job, _base(request)))


async def get_group(request: web.Request) -> web.Response:
    sim = _auth(request)
    return web.json_response(sim.group_entity(sim.find_group(request.match_info["id"])))


async def list_group_projects(request: web.Request) -> web.Response:
    sim = _auth(request)
    group = sim.find_group(request.match_info["id"])
    deep = request.query.get("include_subgroups", "false").lower() == "true"
    group_ids = set(sim.descendants(group.id)) if deep else {group.id}
    projects = sorted(
        (p for p in sim.projects.values() if p.group_id in group_ids), key=lambda p: p.id
    )
    return _paginate(request, [sim.project_entity(p) for p in projects])


async def list_subgroups(request: web.Request) -> web.Response:
    sim = _auth(request)
    group = sim.find_group(request.match_info["id"])
    children = sorted(
        (g for g in sim.groups.values() if g.parent_id == group.id), key=lambda g: g.id
    )
    return _paginate(request, [sim.group_entity(g) for g in children])


def _tag_list(value: object) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    return None


def _as_int(value: object) -> int:
    """GitLab (Grape) coerces ``"7"`` and ``7`` alike for integer params; -1 = invalid."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return -1


async def create_user_runner(request: web.Request) -> web.Response:
    """``POST /user/runners`` (the new runner creation workflow)."""
    sim = _auth(request)
    body = await _body(request)
    runner_type = body.get("runner_type")
    tags = _tag_list(body.get("tag_list"))
    owner: dict[str, Any] = {}
    if runner_type == "instance_type":
        if not sim.admin:
            return _error(403, "403 Forbidden")
    elif runner_type == "group_type":
        group = sim.groups.get(_as_int(body.get("group_id")))
        if group is None:
            return _error(400, "group_id is missing or not found")
        owner["group_id"] = group.id
    elif runner_type == "project_type":
        project = sim.projects.get(_as_int(body.get("project_id")))
        if project is None:
            return _error(400, "project_id is missing or not found")
        owner["project_id"] = project.id
    else:
        return _error(400, "runner_type does not have a valid value")
    if tags is None:
        return _error(400, "tag_list is invalid")
    run_untagged = body.get("run_untagged", True)
    if not isinstance(run_untagged, bool):
        return _error(400, "run_untagged is invalid")
    runner = sim.add_runner(
        str(body.get("description") or ""), tags, run_untagged, runner_type=runner_type, **owner
    )
    return web.json_response(
        {"id": runner.id, "token": runner.token, "token_expires_at": None}, status=201
    )


def _filter_runners(request: web.Request, runners: list[Runner]) -> list[Runner]:
    wanted_type = request.query.get("type")
    wanted_tags = set(_tag_list(request.query.get("tag_list")) or [])
    return [
        r
        for r in runners
        if (not wanted_type or r.runner_type == wanted_type) and wanted_tags <= set(r.tags)
    ]


async def list_runners(request: web.Request) -> web.Response:
    sim = _auth(request)
    runners = _filter_runners(request, sorted(sim.runners.values(), key=lambda r: r.id))
    return _paginate(request, [sim.runner_entity(r) for r in runners])


async def list_all_runners(request: web.Request) -> web.Response:
    sim = _admin(request)
    runners = _filter_runners(request, sorted(sim.runners.values(), key=lambda r: r.id))
    return _paginate(request, [sim.runner_entity(r) for r in runners])


async def get_runner(request: web.Request) -> web.Response:
    sim = _auth(request)
    return web.json_response(sim.runner_details(sim.find_runner(request.match_info["id"])))


async def update_runner(request: web.Request) -> web.Response:
    """``PUT /runners/:id``: only ``paused`` is modelled (what the autoscaler changes)."""
    sim = _auth(request)
    runner = sim.find_runner(request.match_info["id"])
    body = await _body(request)
    if "paused" in body:
        value = body["paused"]
        if isinstance(value, str):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            return _error(400, "paused is invalid")
        runner.paused = value
    return web.json_response(sim.runner_details(runner))


async def delete_runner(request: web.Request) -> web.Response:
    """Deleted even while it runs a job, as GitLab does; the job keeps its runner id."""
    sim = _auth(request)
    runner = sim.find_runner(request.match_info["id"])
    del sim.runners[runner.id]
    return web.Response(status=204)


async def list_runner_jobs(request: web.Request) -> web.Response:
    sim = _auth(request)
    runner = sim.find_runner(request.match_info["id"])
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        return _error(400, "status does not have a valid value")
    sort = request.query.get("sort", "desc")
    jobs = sorted(
        (
            j
            for j in sim.jobs.values()
            if j.runner_id == runner.id and (status is None or j.status == status)
        ),
        key=lambda j: j.id,
        reverse=sort != "asc",
    )
    base = _base(request)
    return _paginate(request, [sim.job_with_project(j, base) for j in jobs], with_total=False)


# ---------------------------------------------------------------------------------------
# GraphQL (just ``jobs(statuses: ...)``)

_STATUS_LITERAL = re.compile(r"statuses\s*:\s*\[?\s*([A-Z_,\s]+?)\s*\]?\s*[,)]")


def _graphql_statuses(query: str, variables: JSON) -> set[str]:
    raw = variables.get("statuses")
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list):
        return {str(s).lower() for s in raw}
    match = _STATUS_LITERAL.search(query)
    if match:
        return {s.strip().lower() for s in match.group(1).split(",") if s.strip()}
    return set()


def _graphql_node(sim: GitLabSim, job: Job) -> JSON:
    project = sim.projects[job.project_id]
    return {
        "id": f"gid://gitlab/Ci::Build/{job.id}",
        "name": job.name,
        "status": job.status.upper(),
        "tags": list(job.tags),
        "createdAt": _iso(job.created_at),
        "project": {
            "id": f"gid://gitlab/Project/{project.id}",
            "fullPath": project.path_with_namespace,
        },
        "pipeline": {"id": f"gid://gitlab/Ci::Pipeline/{job.pipeline_id}"},
    }


async def graphql(request: web.Request) -> web.Response:
    sim = _auth(request)
    body = await _body(request)
    query = body.get("query")
    variables = body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        return web.json_response({"errors": [{"message": "query is required"}]}, status=400)
    if "jobs" not in query:
        return web.json_response({"errors": [{"message": "sim: only Query.jobs is served"}]})
    statuses = _graphql_statuses(query, variables)
    jobs = (
        []
        if not sim.admin
        else sorted(
            (j for j in sim.jobs.values() if not statuses or j.status in statuses),
            key=lambda j: -j.id,
        )
    )
    after = int(variables["after"]) if str(variables.get("after") or "").isdigit() else 0
    page = jobs[after : after + 100]
    has_next = after + 100 < len(jobs)
    return web.json_response(
        {
            "data": {
                "jobs": {
                    "pageInfo": {
                        "hasNextPage": has_next,
                        "endCursor": str(after + 100) if has_next else None,
                    },
                    "nodes": [_graphql_node(sim, j) for j in page],
                }
            }
        }
    )


# ---------------------------------------------------------------------------------------
# Runner-facing endpoints (docs/runner-contract.md)


async def runner_verify(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    runner = sim.runner_by_token(body.get("token"))
    runner.contacted_at = _now()
    return web.json_response({"id": runner.id, "token": runner.token, "token_expires_at": None})


def _matches(runner: Runner, job: Job) -> bool:
    if not job.tags:
        return runner.run_untagged
    return set(job.tags) <= set(runner.tags)


def _job_payload(sim: GitLabSim, job: Job, runner: Runner) -> JSON:
    project = sim.projects[job.project_id]
    return {
        "id": job.id,
        "token": job.token,
        "allow_git_fetch": True,
        "job_info": {
            "id": job.id,
            "name": job.name,
            "stage": "test",
            "project_id": project.id,
            "project_name": project.path,
            "pipeline_id": job.pipeline_id,
            "project_full_path": project.path_with_namespace,
        },
        "git_info": {
            "repo_url": f"http://gitlab.sim/{project.path_with_namespace}.git",
            "ref": "main",
            "sha": "0" * 40,
            "before_sha": "0" * 40,
            "ref_type": "branch",
            "refspecs": [],
            "depth": 20,
        },
        "runner_info": {"timeout": 3600, "runner_session_url": None},
        "variables": [
            {"key": "SIM_JOB_DURATION", "value": str(job.duration), "public": True},
            {"key": "CI_JOB_ID", "value": str(job.id), "public": True},
            {"key": "CI_RUNNER_ID", "value": str(runner.id), "public": True},
        ],
        "steps": [
            {
                "name": "script",
                "script": [f"sleep {job.duration}"],
                "timeout": 3600,
                "when": "on_success",
                "allow_failure": False,
            }
        ],
        "image": None,
        "services": [],
        "artifacts": [],
        "cache": [],
        "credentials": [],
        "dependencies": [],
        "features": {},
    }


async def jobs_request(request: web.Request) -> web.Response:
    """Hand the oldest pending job this runner's tags allow; it becomes ``running``."""
    sim = _sim(request)
    body = await _body(request)
    runner = sim.runner_by_token(body.get("token"))
    runner.contacted_at = _now()
    if runner.paused:  # GitLab hands a paused runner no jobs
        return web.Response(status=204)
    async with sim.lock:
        for job in sorted(sim.jobs.values(), key=lambda j: j.id):
            if job.status == "pending" and _matches(runner, job):
                job.status, job.runner_id, job.started_at = "running", runner.id, _now()
                job.token = f"glcbt-{secrets.token_hex(10)}"
                return web.json_response(_job_payload(sim, job, runner), status=201)
    return web.Response(status=204)


async def job_update(request: web.Request) -> web.Response:
    """``PUT /jobs/:id`` with the job token: ``success``/``failed`` ends the job."""
    sim = _sim(request)
    body = await _body(request)
    job = sim.jobs.get(int(request.match_info["job_id"]))
    token = body.get("token")
    if (
        job is None
        or not job.token
        or not isinstance(token, str)
        or not secrets.compare_digest(job.token, token)
    ):
        return _error(403, "403 Forbidden")
    state = body.get("state")
    if state in ("success", "failed", "canceled"):
        job.status, job.finished_at = str(state), _now()
    elif state not in (None, "running"):
        return _error(400, "state does not have a valid value")
    return web.json_response({"id": job.id, "status": job.status})


# ---------------------------------------------------------------------------------------
# Control endpoints (/_sim/)


async def sim_add_job(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    tags = _tag_list(body.get("tags"))
    status = body.get("status", "pending")
    if tags is None or status not in STATUSES:
        return _error(400, "want {tags: [str], duration: s, status?}")
    try:
        duration = float(body.get("duration", 0))
        pid = int(request.match_info["id"])
    except (TypeError, ValueError):
        return _error(400, "bad duration or project id")
    job = sim.add_job(pid, tags, duration, str(status), str(body.get("name") or ""))
    return web.json_response({"id": job.id})


async def sim_state(request: web.Request) -> web.Response:
    sim = _sim(request)
    return web.json_response(
        {
            "jobs": [
                {
                    "id": j.id,
                    "project_id": j.project_id,
                    "status": j.status,
                    "tags": j.tags,
                    "runner_id": j.runner_id,
                }
                for j in sim.jobs.values()
            ],
            "runners": [
                {
                    "id": r.id,
                    "description": r.description,
                    "tags": r.tags,
                    "run_untagged": r.run_untagged,
                }
                for r in sim.runners.values()
            ],
            "requests": sim.request_count,
        }
    )


async def sim_add_group(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    group = sim.add_group(str(body["path"]), body.get("parent_id"))
    return web.json_response({"id": group.id, "full_path": group.full_path})


async def sim_add_project(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    project = sim.add_project(str(body["path"]), body.get("group_id"), body.get("id"))
    return web.json_response({"id": project.id, "path_with_namespace": project.path_with_namespace})


async def sim_add_runner(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    tags = _tag_list(body.get("tags")) or []
    runner = sim.add_runner(
        str(body.get("description", "")), tags, bool(body.get("run_untagged", False))
    )
    return web.json_response({"id": runner.id, "token": runner.token})


async def sim_set_job(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    job = sim.jobs.get(int(request.match_info["id"]))
    if job is None or body.get("status") not in STATUSES:
        return _error(404 if job is None else 400, "unknown job or status")
    job.status = str(body["status"])
    return web.json_response({"id": job.id, "status": job.status})


# ---------------------------------------------------------------------------------------

_ROUTES: list[tuple[str, str, Callable[[web.Request], Any]]] = [
    ("GET", "/api/v4/user", get_user),
    ("GET", "/api/v4/projects/{id}", get_project),
    ("GET", "/api/v4/projects/{id}/jobs", list_project_jobs),
    ("GET", "/api/v4/projects/{id}/jobs/{job_id:\\d+}", get_project_job),
    ("GET", "/api/v4/groups/{id}", get_group),
    ("GET", "/api/v4/groups/{id}/projects", list_group_projects),
    ("GET", "/api/v4/groups/{id}/subgroups", list_subgroups),
    ("POST", "/api/v4/user/runners", create_user_runner),
    ("GET", "/api/v4/runners", list_runners),
    ("GET", "/api/v4/runners/all", list_all_runners),
    ("POST", "/api/v4/runners/verify", runner_verify),
    ("GET", "/api/v4/runners/{id:\\d+}", get_runner),
    ("PUT", "/api/v4/runners/{id:\\d+}", update_runner),
    ("DELETE", "/api/v4/runners/{id:\\d+}", delete_runner),
    ("GET", "/api/v4/runners/{id:\\d+}/jobs", list_runner_jobs),
    ("POST", "/api/v4/jobs/request", jobs_request),
    ("PUT", "/api/v4/jobs/{job_id:\\d+}", job_update),
    ("POST", "/api/graphql", graphql),
    ("POST", "/_sim/projects/{id:\\d+}/jobs", sim_add_job),
    ("GET", "/_sim/state", sim_state),
    ("POST", "/_sim/groups", sim_add_group),
    ("POST", "/_sim/projects", sim_add_project),
    ("POST", "/_sim/runners", sim_add_runner),
    ("POST", "/_sim/jobs/{id:\\d+}", sim_set_job),
]


def create_app(token: str, *, admin: bool = True) -> web.Application:
    """The simulator application; serve it with :class:`tests.forgesim.common.RunningSim`."""
    sim = GitLabSim(token, admin=admin)
    app = make_app(sim)
    app[SIM] = sim
    for method, path, handler in _ROUTES:
        app.router.add_route(method, path, handler)
    return app
