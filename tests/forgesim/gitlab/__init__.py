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
* ``POST /api/graphql``: ``Query.jobs`` (admins), ``Query.projects(ids:)``/``project``,
  ``Project.jobs`` (one project per request, as GitLab's ``FieldCallCount``),
  ``Project.pipelines { jobs }`` (many projects per request); see :mod:`.graphql`.
* Runner side (docs/runner-contract.md): ``POST /runners/verify``, ``POST /jobs/request``
  (201 job / 204), ``PUT /jobs/:id`` with the job token. Bad runner token -> 403.

Control endpoints (never recorded, no token):

* ``POST /_sim/projects/{id}/jobs`` ``{"tags": [...], "duration": s, "status"?: "pending"|
  "created", "name"?, "count"?: n}`` -> ``{"id": job_id, "ids": [...]}`` (creates project
  ``id`` if needed; ``count`` jobs at once for huge scopes).
* ``GET /_sim/state`` -> ``{"jobs": [{id, project_id, status, tags, runner_id}],
  "runners": [{id, description, tags, run_untagged}], "requests": n}``.
* ``POST|GET|DELETE /_sim/faults``, ``GET /_sim/stats`` (common.py; the fault catalogue
  is tests/forgesim/README.md, GitLab's own kinds are in :mod:`.faults`).
* ``POST /_sim/groups`` ``{"path": "name", "parent_id"?: id}`` -> ``{"id", "full_path"}``.
* ``POST /_sim/projects`` ``{"id"?: n, "path": "name", "group_id"?: g}`` ->
  ``{"id", "path_with_namespace"}`` (without a group the namespace is ``sim``).
* ``POST /_sim/runners`` ``{"description", "tags"?, "run_untagged"?}`` -> ``{"id", "token"}``:
  a runner registered by "someone else" (for ownership tests).
* ``POST /_sim/jobs/{id}`` ``{"status": ...}``: set a job's status directly.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.forgesim.common import make_app
from tests.forgesim.gitlab import control, faults, graphql, routes, runner_side
from tests.forgesim.gitlab.state import SIM, GitLabSim

__all__ = ["SIM", "GitLabSim", "create_app"]

_ROUTES: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
    ("GET", "/api/v4/user", routes.get_user),
    ("GET", "/api/v4/projects/{id}", routes.get_project),
    ("GET", "/api/v4/projects/{id}/jobs", routes.list_project_jobs),
    ("GET", "/api/v4/projects/{id}/jobs/{job_id:\\d+}", routes.get_project_job),
    ("GET", "/api/v4/groups/{id}", routes.get_group),
    ("GET", "/api/v4/groups/{id}/projects", routes.list_group_projects),
    ("GET", "/api/v4/groups/{id}/subgroups", routes.list_subgroups),
    ("POST", "/api/v4/user/runners", routes.create_user_runner),
    ("GET", "/api/v4/runners", routes.list_runners),
    ("GET", "/api/v4/runners/all", routes.list_all_runners),
    ("POST", "/api/v4/runners/verify", runner_side.runner_verify),
    ("GET", "/api/v4/runners/{id:\\d+}", routes.get_runner),
    ("PUT", "/api/v4/runners/{id:\\d+}", routes.update_runner),
    ("DELETE", "/api/v4/runners/{id:\\d+}", routes.delete_runner),
    ("GET", "/api/v4/runners/{id:\\d+}/jobs", routes.list_runner_jobs),
    ("POST", "/api/v4/jobs/request", runner_side.jobs_request),
    ("PUT", "/api/v4/jobs/{job_id:\\d+}", runner_side.job_update),
    ("POST", "/api/graphql", graphql.graphql),
    ("POST", "/_sim/projects/{id:\\d+}/jobs", control.sim_add_job),
    ("GET", "/_sim/state", control.sim_state),
    ("POST", "/_sim/groups", control.sim_add_group),
    ("POST", "/_sim/projects", control.sim_add_project),
    ("POST", "/_sim/runners", control.sim_add_runner),
    ("POST", "/_sim/jobs/{id:\\d+}", control.sim_set_job),
]


def create_app(token: str, *, admin: bool = True) -> web.Application:
    """The simulator application; serve it with :class:`tests.forgesim.common.RunningSim`."""
    sim = GitLabSim(token, admin=admin)
    app = make_app(sim, faults.ANSWERS, faults.STATE_KINDS)
    sim.match_hook = functools.partial(faults.fault_match, sim)
    app[SIM] = sim
    for method, path, handler in _ROUTES:
        app.router.add_route(method, path, handler)
    return app
