"""GitLab GraphQL (``POST /api/graphql``): the part of GitLab's schema a runner autoscaler uses.

Field and argument names follow GitLab's published schema (``app/graphql``):

* ``Query.jobs(statuses:, first:, after:)``: every job of the instance, **admins only**
  (``Resolvers::Ci::AllJobsResolver``; empty for other users, GitLab commit d48d5398).
* ``Query.projects(ids: [ID!], first:, after:)`` (``Resolvers::ProjectsResolver``, ids are
  ``gid://gitlab/Project/N``) and ``Query.project(fullPath:)``.
* ``Project.jobs(statuses:, first:, after:)`` (``Resolvers::ProjectJobsResolver``) carries
  ``extension Gitlab::Graphql::Limit::FieldCallCount, limit: 1``: GitLab resolves it for
  **one project per request**; every further project gets ``jobs: null`` and the error
  ``"jobs" field can be requested only for 1 Project(s) at a time.``. So
  ``projects { nodes { jobs } }`` cannot list many projects' jobs in one request.
* ``Project.pipelines(status:, scope:, first:, after:)`` (no call limit) and
  ``Pipeline.jobs(statuses:, first:, after:)`` (``Resolvers::Ci::JobsResolver``): the shape
  that does list pending jobs of many projects in one request, e.g.
  ``projects(ids: $ids) { nodes { fullPath pipelines(status: PENDING) { nodes { jobs(
  statuses: [PENDING]) { nodes { id name tags createdAt } } } } } }``.
* ``CiJob``: ``id`` (``gid://gitlab/Ci::Build/N``), ``name``, ``status``, ``tags``,
  ``createdAt``, ``queuedAt``, ``startedAt``, ``pipeline``, ``project``; connections have
  ``nodes``, ``edges { cursor node }``, ``pageInfo``, ``count``.

Limits as ``GitlabSchema``: ``first`` is capped at 100 (``default_max_page_size``), query
complexity at 250 for users and 300 for admins, depth at 20. Complexity is computed as
``Types::BaseField``: 1 per field plus children; a resolver field adds 1 and then
``limit * 1%`` of itself (100 items double it). A project the ``forbidden`` fault refuses
answers ``jobs: null`` and ``pipelines: null`` (CI/CD disabled takes both) with GitLab's
resource-not-available error. Anything outside this subset is a GraphQL error
(``undefinedField``...), never a silent guess.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from aiohttp import web

from tests.forgesim.gitlab import gql_parse
from tests.forgesim.gitlab.gql_schema import TYPES, FieldDef, Pipeline, pipelines_of
from tests.forgesim.gitlab.http import auth, json_body
from tests.forgesim.gitlab.model import JSON, Job, Project, iso
from tests.forgesim.gitlab.state import GitLabSim

MAX_PAGE_SIZE = 100
MAX_COMPLEXITY = {False: 250, True: 300}
MAX_DEPTH = 20
NOT_AVAILABLE = (
    "The resource that you are attempting to access does not exist or you don't have "
    "permission to perform this action"
)


class QueryError(Exception):
    def __init__(self, message: str, field: gql_parse.Field | None = None, **ext: Any) -> None:
        super().__init__(message)
        self.field = field
        self.extensions = ext

    def as_json(self) -> JSON:
        out: JSON = {"message": str(self)}
        if self.field is not None:
            out["locations"] = [{"line": self.field.line, "column": self.field.column}]
        if self.extensions:
            out["extensions"] = self.extensions
        return out


# -- static checks: fields, arguments, complexity, depth ---------------------------------


def validate(selections: list[gql_parse.Field], type_name: str, depth: int = 1) -> int:
    """Check every field against the schema; answer the query's depth."""
    deepest = depth
    for field in selections:
        if field.name == "__typename":
            continue
        fdef = TYPES[type_name].get(field.name)
        if fdef is None:
            raise QueryError(
                f"Field '{field.name}' doesn't exist on type '{type_name}'",
                field,
                code="undefinedField",
                typeName=type_name,
                fieldName=field.name,
            )
        unknown = sorted(set(field.args) - fdef.args)
        if unknown:
            raise QueryError(
                f"Field '{field.name}' doesn't accept argument '{unknown[0]}'",
                field,
                code="argumentNotAccepted",
            )
        if fdef.type is None and field.selections:
            raise QueryError(f"Selections can't be made on scalars (field '{field.name}')", field)
        if fdef.type is not None and not field.selections:
            raise QueryError(
                f"Field must have selections (field '{field.name}' returns {fdef.type})", field
            )
        if fdef.type is not None:
            deepest = max(deepest, validate(field.selections, fdef.type, depth + 1))
    return deepest


def complexity(selections: list[gql_parse.Field], type_name: str, variables: JSON) -> int:
    total = 0
    for field in selections:
        fdef = TYPES[type_name].get(field.name)
        if fdef is None:  # __typename
            total += 1
            continue
        child = complexity(field.selections, fdef.type, variables) if fdef.type else 0
        if not fdef.resolver:
            total += 1 + child
            continue
        own = child + 1  # BaseResolver.resolver_complexity: 1 (+ sort/search, unused here)
        if fdef.connection:
            first = gql_parse.resolve_value(field.args.get("first"), variables)
            limit = min(MAX_PAGE_SIZE, first) if isinstance(first, int) else MAX_PAGE_SIZE
            own += int(own * limit * 0.01)
        total += own
    return total


# -- execution ---------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    sim: GitLabSim
    variables: JSON
    errors: list[JSON] = dataclasses.field(default_factory=list)
    calls: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Connection:
    items: list[Any]
    start: int
    first: int

    @property
    def page(self) -> list[Any]:
        return self.items[self.start : self.start + self.first]


def _cursor(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        return int(json.loads(base64.b64decode(str(cursor)))["offset"]) + 1
    except (ValueError, KeyError, TypeError):
        raise QueryError("Please provide a valid cursor") from None


def _connection(items: list[Any], args: JSON) -> Connection:
    first = args.get("first")
    size = MAX_PAGE_SIZE if not isinstance(first, int) else max(0, min(first, MAX_PAGE_SIZE))
    return Connection(items, _offset(args.get("after")), size)


def _statuses(args: JSON, key: str = "statuses") -> set[str] | None:
    raw = args.get(key)
    if raw is None:
        return None
    values = raw if isinstance(raw, list) else [raw]
    return {str(v).lower() for v in values}


def _jobs(jobs: list[Job], args: JSON) -> Connection:
    wanted = _statuses(args)
    chosen = [j for j in jobs if wanted is None or j.status in wanted]
    return _connection(sorted(chosen, key=lambda j: -j.id), args)


def resolve_field(ctx: Context, type_name: str, parent: Any, field: gql_parse.Field) -> Any:
    sim, args = ctx.sim, gql_parse.resolve_value(field.args, ctx.variables)
    name = field.name
    if type_name == "Query":
        if name == "jobs":
            return _jobs(list(sim.jobs.values()) if sim.admin else [], args)
        if name == "projects":
            ids = args.get("ids")
            wanted = None if ids is None else {str(i).rsplit("/", 1)[-1] for i in ids}
            projects = [p for p in sim.projects.values() if wanted is None or str(p.id) in wanted]
            return _connection(sorted(projects, key=lambda p: p.id), args)
        if name == "project":
            ref = str(args.get("fullPath"))
            return next((p for p in sim.projects.values() if p.path_with_namespace == ref), None)
        return {"id": "gid://gitlab/User/1", "username": "sim", "name": "Sim"}
    if type_name == "Project" and name in {"jobs", "pipelines"}:
        return _project_list(ctx, parent, field, args)
    if type_name == "Pipeline" and name == "jobs":
        return _jobs(parent.jobs, args)
    return _scalar_or_object(sim, type_name, parent, name)


def _project_list(ctx: Context, project: Project, field: gql_parse.Field, args: JSON) -> Any:
    sim = ctx.sim
    mine = [j for j in sim.jobs.values() if j.project_id == project.id]
    refused = sim.faults.active("forbidden", "GET", f"/api/v4/projects/{project.id}/jobs")
    if field.name == "pipelines":
        if refused:  # CI/CD disabled: ProjectPolicy prevents :read_pipeline with :read_build
            raise QueryError(NOT_AVAILABLE, field)
        wanted = _statuses(args, "status") or _statuses(args, "scope")
        pipelines = [p for p in pipelines_of(mine) if wanted is None or p.status in wanted]
        return _connection(pipelines, args)
    ctx.calls["Project.jobs"] = ctx.calls.get("Project.jobs", 0) + 1
    if ctx.calls["Project.jobs"] > 1:  # Gitlab::Graphql::Limit::FieldCallCount, limit: 1
        raise QueryError('"jobs" field can be requested only for 1 Project(s) at a time.', field)
    if refused:
        raise QueryError(NOT_AVAILABLE, field)  # authorize :read_build fails
    return _jobs(mine, args)


def _scalar_or_object(sim: GitLabSim, type_name: str, parent: Any, name: str) -> Any:
    if isinstance(parent, Connection):
        if name == "count":
            return len(parent.items)
        if name == "pageInfo":
            end = parent.start + len(parent.page) - 1
            return {
                "hasNextPage": parent.start + parent.first < len(parent.items),
                "hasPreviousPage": parent.start > 0,
                "startCursor": _cursor(parent.start) if parent.page else None,
                "endCursor": _cursor(end) if parent.page else None,
            }
        if name == "edges":
            return [
                {"cursor": _cursor(parent.start + i), "node": n} for i, n in enumerate(parent.page)
            ]
        return parent.page  # nodes
    if isinstance(parent, dict):
        return parent.get(name)
    if isinstance(parent, Project):
        return {
            "id": f"gid://gitlab/Project/{parent.id}",
            "fullPath": parent.path_with_namespace,
            "name": parent.path,
        }[name]
    if isinstance(parent, Pipeline):
        if name == "project":
            return sim.projects.get(parent.project_id)
        return {
            "id": f"gid://gitlab/Ci::Pipeline/{parent.id}",
            "iid": str(parent.id),
            "status": parent.status.upper(),
            "createdAt": iso(parent.created_at),
        }[name]
    job: Job = parent
    if name == "pipeline":
        return next(p for p in pipelines_of([job]))
    if name == "project":
        return sim.projects.get(job.project_id)
    return {
        "id": f"gid://gitlab/Ci::Build/{job.id}",
        "name": job.name,
        "status": job.status.upper(),
        "tags": list(job.tags),
        "createdAt": iso(job.created_at),
        "queuedAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
    }[name]


def execute(
    ctx: Context, selections: list[gql_parse.Field], type_name: str, parent: Any, path: list[Any]
) -> JSON:
    out: JSON = {}
    for field in selections:
        if field.name == "__typename":
            out[field.key] = type_name
            continue
        fdef: FieldDef = TYPES[type_name][field.name]
        try:
            value = resolve_field(ctx, type_name, parent, field)
        except QueryError as exc:
            ctx.errors.append({**exc.as_json(), "path": [*path, field.key]})
            out[field.key] = None
            continue
        out[field.key] = _render(ctx, fdef, field, value, [*path, field.key])
    return out


def _render(
    ctx: Context, fdef: FieldDef, field: gql_parse.Field, value: Any, path: list[Any]
) -> Any:
    if fdef.type is None or value is None:
        return value
    if isinstance(value, list):
        return [
            execute(ctx, field.selections, fdef.type, item, [*path, i])
            for i, item in enumerate(value)
        ]
    return execute(ctx, field.selections, fdef.type, value, path)


async def graphql(request: web.Request) -> web.Response:
    sim = auth(request)
    body = await json_body(request)
    query, variables = body.get("query"), body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        return web.json_response({"errors": [{"message": "No query string was present"}]})
    try:
        operation = gql_parse.parse(query, body.get("operationName"))
        if operation.kind != "query":
            raise QueryError(f"sim: only queries are served, not {operation.kind}")
        values = {**{k: v for k, v in operation.variables.items() if v is not None}, **variables}
        depth = validate(operation.selections, "Query")
        if depth > MAX_DEPTH:
            raise QueryError(f"Query has depth of {depth}, which exceeds max depth of {MAX_DEPTH}")
        cost, ceiling = complexity(operation.selections, "Query", values), MAX_COMPLEXITY[sim.admin]
        if cost > ceiling:
            raise QueryError(
                f"Query has complexity of {cost}, which exceeds max complexity of {ceiling}"
            )
    except gql_parse.GraphQLSyntaxError as exc:
        error = {"message": str(exc), "locations": [{"line": exc.line, "column": exc.column}]}
        return web.json_response({"errors": [error]})
    except QueryError as exc:
        return web.json_response({"errors": [exc.as_json()]})
    ctx = Context(sim, values)
    data = execute(ctx, operation.selections, "Query", None, [])
    answer: JSON = {"data": data}
    if ctx.errors:
        answer["errors"] = ctx.errors
    return web.json_response(answer)
