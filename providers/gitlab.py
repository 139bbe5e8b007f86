"""GitLab adapter: pending jobs, runner registration, activity and job webhooks.

What is GitLab-specific lives here; the request plumbing (budget with priorities, rate
gate, deadline, ETags, redirect refusal, status -> error) is :mod:`providers.http`.

* **python-gitlab** is used below its object model, for ``http_get/post/put/delete`` and
  ``http_list`` (URL building, ``PRIVATE-TOKEN``, JSON, ``Link`` pagination). It gets our
  ``requests.Session`` through its public ``session=`` argument, so every request it
  sends (every page too) passes through the shared transport; ``obey_rate_limit=False``
  and ``max_retries=0`` keep it from sleeping by itself (it would sleep ~100 s on 429).
  ``keep_base_url=True``: pagination stays on the configured URL.
* **Demand**: ``GET /projects/:id/jobs?scope[]=pending`` per project (groups expanded to
  projects), polled within the job-poll budget by :func:`providers.scopes.poll_scopes`;
  GraphQL ``jobs(statuses: PENDING)`` for an admin instance scope.
* **Activity** is one ``GET /runners`` listing (``job_execution_status`` of every runner,
  100 a page) plus ``GET /runners/:id/jobs`` only for runners whose busy flag changed
  since the last look (for the job id and its end): 12 busy runners cost 1 request, not
  12, per round (issue 11.2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.exceptions

from providers.base import (
    ForgeKind,
    ForgeRunner,
    GitLabOptions,
    PendingJob,
    ProviderHealth,
    Registration,
    RequestObserver,
    RunnerActivity,
    RunnerRef,
    RunnerRequest,
    WebhookResult,
    ignore_request,
    runner_name_prefix,
)
from providers.budget import Budget, BudgetShort, Priority, RateGate, Sleep
from providers.errors import (
    AccessDenied,
    NotFound,
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)
from providers.http import ForgeHTTP, Limits, RateView, parse_time
from providers.scopes import ScopeBook, poll_scopes

T = TypeVar("T")
JSON = dict[str, Any]

#: How many forge calls may run in worker threads at once (per provider).
MAX_CONCURRENT_CALLS = 4
#: Page size for every list call: fewer pages means fewer requests against the budget.
PER_PAGE = 100
#: First guess when a 429 says neither Retry-After nor RateLimit-Reset (then doubles).
DEFAULT_RETRY_AFTER_S = 30.0
#: Job statuses after which a job no longer waits for a runner (webhook "finished").
_NOT_WAITING = frozenset({"running", "success", "failed", "canceled", "canceling", "skipped"})

_GRAPHQL_JOBS = """
query($statuses: [CiJobStatus!], $after: String) {
  jobs(statuses: $statuses, first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id name status tags createdAt project { id fullPath } pipeline { id } }
  }
}
"""

_ID_AFTER = {"projects": ":id", "groups": ":id", "runners": ":id", "jobs": ":job_id"}
_KEYWORDS = frozenset(
    {"all", "verify", "request", "jobs", "projects", "subgroups", "runners", "user", "groups"}
)


def endpoint_template(method: str, url: str) -> str:
    """``GET http://h/api/v4/projects/a%2Fb/jobs?x`` -> ``GET /projects/:id/jobs``.

    Low cardinality on purpose: ids and paths become placeholders.
    """
    path = urlsplit(url).path
    for prefix in ("/api/v4", "/api"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
            break
    out: list[str] = []
    previous = ""
    for segment in path.strip("/").split("/"):
        if previous in _ID_AFTER and segment not in _KEYWORDS:
            out.append(_ID_AFTER[previous])
        else:
            out.append(segment)
        previous = segment
    return f"{method.upper()} /{'/'.join(out)}"


def _translate(exc: Exception) -> ProviderError | None:
    """python-gitlab's own exceptions (error *answers* never reach it: the transport maps
    them first). Anything else is not ours to translate and propagates."""
    if isinstance(exc, gitlab.exceptions.GitlabParsingError):
        return TransientProviderError(f"GitLab sent an unparsable answer: {exc}")
    if isinstance(exc, gitlab.exceptions.RedirectError):
        return PermanentProviderError(f"GitLab redirected a write request: {exc}")
    if isinstance(exc, gitlab.exceptions.GitlabError):
        code = exc.response_code or 0
        if code >= 500:
            return TransientProviderError(f"GitLab {code}: {exc.error_message}")
        return PermanentProviderError(f"GitLab {code}: {exc.error_message}")
    return None


# ---------------------------------------------------------------------------------------
# Parsing helpers


def _gid_number(value: object) -> str:
    """``gid://gitlab/Ci::Build/42`` -> ``42`` (GraphQL ids are global ids)."""
    text = str(value or "")
    return text.rsplit("/", 1)[-1]


def job_from_rest(job: JSON, scope: str) -> PendingJob:
    """A REST job entity (``GET /projects/:id/jobs``) as a :class:`PendingJob`."""
    pipeline = job.get("pipeline") or {}
    return PendingJob(
        id=str(job["id"]),
        scope=scope,
        tags=tuple(str(t) for t in job.get("tag_list") or ()),
        created_at=parse_time(job.get("created_at")) or datetime.now(UTC),
        pipeline=str(pipeline.get("id", "")) if isinstance(pipeline, dict) else "",
        name=str(job.get("name") or ""),
    )


def job_from_graphql(node: JSON) -> PendingJob:
    """A GraphQL ``CiJob`` node as a :class:`PendingJob`."""
    project = node.get("project") or {}
    pipeline = node.get("pipeline") or {}
    return PendingJob(
        id=_gid_number(node.get("id")),
        scope=str(project.get("fullPath") or _gid_number(project.get("id"))),
        tags=tuple(str(t) for t in node.get("tags") or ()),
        created_at=parse_time(node.get("createdAt")) or datetime.now(UTC),
        pipeline=_gid_number(pipeline.get("id")) if pipeline else "",
        name=str(node.get("name") or ""),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Project:
    """One project to poll: ``key`` is what the API path uses, ``scope`` what jobs report."""

    key: str
    scope: str


# ---------------------------------------------------------------------------------------
# The provider


class GitLabProvider:
    """:class:`providers.base.Provider` for one GitLab instance (REST v4 + GraphQL)."""

    kind = ForgeKind.GITLAB

    def __init__(
        self,
        options: GitLabOptions,
        *,
        observer: RequestObserver = ignore_request,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = options.name
        self._options = options
        self._clock = clock
        self._prefix = runner_name_prefix(options.instance_id)
        self._budget = Budget(options.requests_per_minute, clock, sleep)
        self._gate = RateGate(
            clock,
            min_wait_s=options.min_retry_wait_s,
            max_wait_s=options.max_retry_wait_s,
            default_wait_s=DEFAULT_RETRY_AFTER_S,
        )
        self._http = ForgeHTTP(
            name=options.name,
            base_url=options.url,
            limits=Limits(
                request_timeout_s=options.request_timeout_s,
                call_deadline_s=options.call_deadline_s,
                min_wait_s=options.min_retry_wait_s,
                max_wait_s=options.max_retry_wait_s,
                max_concurrency=MAX_CONCURRENT_CALLS,
            ),
            budget=self._budget,
            gate=self._gate,
            rate=RateView("ratelimit-"),
            template=endpoint_template,
            observer=observer,
        )
        self._gl = gitlab.Gitlab(
            options.url,
            private_token=options.token,
            timeout=options.request_timeout_s,
            retry_transient_errors=False,
            per_page=PER_PAGE,
            keep_base_url=True,
            session=self._http.session,
        )
        self._book = ScopeBook(clock)
        self._note = ""
        self._stretched: float | None = None
        self._instance_result: list[PendingJob] | None = None
        self._group_projects: list[_Project] = []
        self._groups_fetched_at: float | None = None
        self._ids: dict[tuple[str, str], int] = {}
        self._busy_seen: dict[str, RunnerActivity] = {}

    # -- plumbing ---------------------------------------------------------------------

    async def _call(self, priority: Priority, fn: Callable[[], T]) -> T:
        return await self._http.call(priority, fn, _translate)

    def _list(self, path: str, query: JSON | None = None, *, all_pages: bool = True) -> list[JSON]:
        """GET a list endpoint, following ``Link: rel=next`` when ``all_pages``."""
        query = {"per_page": PER_PAGE, **(query or {})}
        result = self._gl.http_list(
            path, query_data=query, get_all=all_pages, obey_rate_limit=False, max_retries=0
        )
        return [item for item in result if isinstance(item, dict)]

    def _object(self, result: object, path: str) -> JSON:
        if not isinstance(result, dict):
            raise PermanentProviderError(f"GitLab answered {path} with a non-object")
        return result

    def _get(self, path: str) -> JSON:
        return self._object(self._gl.http_get(path, obey_rate_limit=False, max_retries=0), path)

    def _post(self, path: str, data: JSON) -> JSON:
        result = self._gl.http_post(path, post_data=data, obey_rate_limit=False, max_retries=0)
        return self._object(result, path)

    def _put(self, path: str, data: JSON) -> JSON:
        result = self._gl.http_put(path, post_data=data, obey_rate_limit=False, max_retries=0)
        return self._object(result, path)

    def _delete(self, path: str) -> None:
        self._gl.http_delete(path, obey_rate_limit=False, max_retries=0)

    # -- scopes -----------------------------------------------------------------------

    async def _projects(self) -> list[_Project]:
        """Configured projects plus the (cached) projects of configured groups."""
        configured = [_Project(key=p, scope=p) for p in self._options.projects]
        if self._options.groups:
            await self._refresh_groups_if_due()
        seen = {p.key for p in configured}
        extra = [p for p in self._group_projects if p.key not in seen and p.scope not in seen]
        return configured + extra

    async def _refresh_groups_if_due(self) -> None:
        """Expand groups (with subgroups) again every ``group_refresh_s``.

        The first expansion is part of the job poll; later ones are sweeps (skipped when
        the budget is short). A failed refresh keeps the previous expansion.
        """
        fetched = self._groups_fetched_at
        if fetched is not None and self._clock() - fetched < self._options.group_refresh_s:
            return
        priority = Priority.JOB_POLL if fetched is None else Priority.SWEEP
        try:
            projects = await self._call(priority, self._expand_groups)
        except ProviderError:
            if fetched is None:
                raise
            return
        self._group_projects = projects
        self._groups_fetched_at = self._clock()

    def _expand_groups(self) -> list[_Project]:
        found: dict[str, _Project] = {}
        query = {"include_subgroups": "true", "with_shared": "false", "archived": "false"}
        for group in self._options.groups:
            for project in self._list(f"/groups/{quote(group, safe='')}/projects", query):
                key = str(project["id"])
                scope = str(project.get("path_with_namespace") or key)
                found[key] = _Project(key=key, scope=scope)
        return list(found.values())

    def _in_scope(self, project_id: int, path: str) -> bool:
        """Is this project one the configuration asks us to serve (webhook check)?"""
        if self._options.instance:
            return True
        lowered = path.lower()
        for ref in self._options.projects:
            if ref == str(project_id) or (lowered and ref.lower() == lowered):
                return True
        if any(p.key == str(project_id) for p in self._group_projects):
            return True
        return bool(lowered) and any(
            lowered.startswith(group.lower() + "/") for group in self._options.groups
        )

    # -- pending jobs -----------------------------------------------------------------

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every waiting job: GraphQL for an admin instance scope, else project polls."""
        self._gate.check(self.name)
        has_scopes = bool(self._options.projects or self._options.groups)
        if self._options.instance:
            try:
                jobs = await self._instance_jobs()
            except PermanentProviderError:
                if not has_scopes:
                    raise
                jobs = []  # GraphQL refused the query: poll the configured scopes instead
            if jobs or not has_scopes:
                return jobs
        return await self._poll_projects()

    def _statuses(self) -> list[str]:
        return ["pending", "created"] if self._options.include_created else ["pending"]

    async def _instance_jobs(self) -> list[PendingJob]:
        """GraphQL ``jobs(statuses: PENDING)``: empty for non-admins, as GitLab answers.

        Within the budget like project polls: with no token left, the last answer stands.
        """
        if self._instance_result is not None and not self._budget.available():
            return self._instance_result
        self._instance_result = await self._call(Priority.JOB_POLL, self._graphql_jobs)
        return self._instance_result

    def _graphql_jobs(self) -> list[PendingJob]:
        statuses = [s.upper() for s in self._statuses()]
        url = self._gl.url.rstrip("/") + "/api/graphql"
        jobs: list[PendingJob] = []
        after: str | None = None
        while True:
            payload = {"query": _GRAPHQL_JOBS, "variables": {"statuses": statuses, "after": after}}
            answer = self._post(url, payload)
            if answer.get("errors"):
                raise PermanentProviderError(f"GitLab GraphQL errors: {answer['errors']!r:.300}")
            connection = ((answer.get("data") or {}).get("jobs")) or {}
            jobs.extend(job_from_graphql(n) for n in connection.get("nodes") or ())
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return jobs
            after = str(page["endCursor"])

    async def _poll_projects(self) -> list[PendingJob]:
        """Poll as many projects as the budget allows (stalest first), keep the rest."""
        projects = await self._projects()
        by_key = {p.key: p for p in projects}
        keys = list(by_key)
        self._book.labels.update({p.key: p.scope for p in projects})

        async def poll_one(key: str) -> list[PendingJob]:
            return await self._poll_one(by_key[key])

        done = await poll_scopes(
            self._book, keys, poll_one, self._budget, verify_identity=self._verify_identity
        )
        self._note_budget(done.polled, done.due)
        return self._book.jobs(keys)

    def _note_budget(self, polled: int, total: int) -> None:
        """When a poll cannot cover every project, say how stale the demand may get."""
        if polled >= total:
            self._stretched = None
            self._note = ""
            return
        self._stretched = total / self._budget.rate  # seconds to poll every project once
        self._note = f"polled {polled} of {total} projects (budget)"

    async def _poll_one(self, project: _Project) -> list[PendingJob]:
        path = f"/projects/{quote(project.key, safe='')}/jobs"
        query = {"scope[]": self._statuses()}
        raw = await self._call(Priority.JOB_POLL, lambda: self._list(path, query))
        return [job_from_rest(j, project.scope) for j in raw if j.get("status") in self._statuses()]

    async def _verify_identity(self) -> None:
        """Every project refused: is it the token? ``GET /user`` (401/403: pause the forge)."""
        try:
            await self._call(Priority.JOB_POLL, lambda: self._get("/user"))
        except AccessDenied as exc:
            raise ProviderAuthError(f"GitLab refused the token's identity check: {exc}") from exc

    # -- runners ----------------------------------------------------------------------

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """``POST /user/runners`` with a runner type that fits the scope."""
        data: JSON = {
            "description": request.name,
            "tag_list": list(request.labels),
            "run_untagged": request.run_untagged,
            **await self._runner_owner(),
        }
        created = await self._call(Priority.REGISTRATION, lambda: self._post("/user/runners", data))
        token = str(created.get("token") or "")
        if not token or "id" not in created:
            raise PermanentProviderError("POST /user/runners answered without id/token")
        return Registration(
            forge_runner_id=str(created["id"]),
            name=request.name,
            command=self._runner_command(request),
            credential=token,
            credential_env="CI_SERVER_TOKEN",
        )

    def _runner_command(self, request: RunnerRequest) -> tuple[str, ...]:
        """The ``gitlab-runner run-single`` line of docs/runner-contract.md (no secret)."""
        return (
            "gitlab-runner",
            "run-single",
            "--url",
            self._options.url,
            "--executor",
            request.executor,
            "--max-builds",
            "1" if request.ephemeral else "0",
            "--wait-timeout",
            str(request.idle_timeout_s),
            *request.executor_args,
        )

    def _runner_type(self) -> str:
        opts = self._options
        if opts.runner_type:
            return opts.runner_type
        if opts.instance:
            return "instance_type"
        if opts.runner_group_id is not None:
            return "group_type"
        if opts.runner_project_id is not None:
            return "project_type"
        if opts.groups:
            return "group_type"
        if opts.projects:
            return "project_type"
        raise PermanentProviderError("no scope to register a runner in; set runner_type")

    async def _runner_owner(self) -> JSON:
        """``runner_type`` plus the ``group_id``/``project_id`` it needs."""
        runner_type = self._runner_type()
        opts = self._options
        if runner_type == "group_type":
            gid = opts.runner_group_id
            if gid is None:
                gid = await self._numeric_id("groups", opts.groups[0] if opts.groups else "")
            return {"runner_type": runner_type, "group_id": gid}
        if runner_type == "project_type":
            pid = opts.runner_project_id
            if pid is None:
                first = opts.projects[0] if opts.projects else ""
                pid = await self._numeric_id("projects", first)
            return {"runner_type": runner_type, "project_id": pid}
        return {"runner_type": runner_type}

    async def _numeric_id(self, kind: str, ref: str) -> int:
        """The numeric id of a group/project given by id or full path (cached)."""
        if not ref:
            raise PermanentProviderError(f"no {kind} configured to register runners in")
        if ref.isdigit():
            return int(ref)
        cached = self._ids.get((kind, ref))
        if cached is None:
            path = f"/{kind}/{quote(ref, safe='')}"
            entity = await self._call(Priority.REGISTRATION, lambda: self._get(path))
            cached = self._ids[(kind, ref)] = int(entity["id"])
        return cached

    async def _runner_call(self, priority: Priority, fn: Callable[[], T]) -> T:
        """A call on one runner: its 404 means the runner is gone."""
        try:
            return await self._call(priority, fn)
        except NotFound as exc:
            raise RunnerNotFound(str(exc)) from exc

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Pause, make sure no job runs on it, then ``DELETE /runners/:id``.

        GitLab deletes a runner even while it runs a job (and the job is lost), so the
        check must not race a job pickup: a paused runner is handed no new jobs. If a job
        is running, the runner is unpaused again and :class:`RunnerBusy` keeps it. With
        ``force`` (its container is going away anyway) it is deleted straight away. Only a
        runner whose description has this instance's prefix is ever touched.
        """
        forge_runner_id = _runner_id(RunnerRef.of(runner))
        path = f"/runners/{quote(forge_runner_id, safe='')}"
        prio = Priority.REGISTRATION
        entity = await self._runner_call(prio, lambda: self._get(path))
        if not str(entity.get("description") or "").startswith(self._prefix):
            raise PermanentProviderError(
                f"runner {forge_runner_id} was not created by this instance; not deleting it"
            )
        if not force:
            await self._runner_call(prio, lambda: self._put(path, {"paused": True}))
            activity = await self._jobs_of(forge_runner_id, prio)
            if activity.busy:
                await self._runner_call(prio, lambda: self._put(path, {"paused": False}))
                raise RunnerBusy(f"runner {forge_runner_id} is running job {activity.current_job}")
        await self._runner_call(prio, lambda: self._delete(path))
        self._busy_seen.pop(forge_runner_id, None)

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Runners whose description starts with this instance's prefix."""
        runners = await self._all_runners(Priority.SWEEP)
        return [
            ForgeRunner(
                id=str(r["id"]),
                name=str(r.get("description") or ""),
                online=bool(r.get("online")),
                busy=r.get("job_execution_status") == "active",
            )
            for r in runners
            if str(r.get("description") or "").startswith(self._prefix)
        ]

    async def _all_runners(self, priority: Priority) -> list[JSON]:
        """``/runners/all`` for an admin instance scope, else (or when refused) ``/runners``."""
        if self._options.instance:
            try:
                return await self._call(priority, lambda: self._list("/runners/all"))
            except AccessDenied:
                pass  # not an admin after all: the runners this user manages still count
        return await self._call(priority, lambda: self._list("/runners"))

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy flags from one runner listing; per-runner job look-ups only on change.

        A runner whose ``job_execution_status`` is what it was last time answers from
        memory; one that changed (or is not in the listing) costs one
        ``GET /runners/:id/jobs``, which also gives the job id and the last job's end.
        """
        ids = [_runner_id(RunnerRef.of(r)) for r in runners]
        if not ids:
            return []
        listing = {str(r.get("id")): r for r in await self._all_runners(Priority.ACTIVITY)}
        answers: dict[str, RunnerActivity] = {}
        to_check: list[str] = []
        for rid in ids:
            listed = listing.get(rid)
            previous = self._busy_seen.get(rid)
            busy = listed is not None and listed.get("job_execution_status") == "active"
            if listed is not None and previous is not None and previous.busy == busy:
                answers[rid] = previous
            else:
                to_check.append(rid)
        checks: list[Awaitable[RunnerActivity]] = [
            self._jobs_of(rid, Priority.ACTIVITY) for rid in to_check
        ]
        outcomes = await asyncio.gather(*checks, return_exceptions=True)
        for rid, outcome in zip(to_check, outcomes, strict=True):
            if isinstance(outcome, RunnerActivity):
                answers[rid] = outcome
            elif isinstance(outcome, BudgetShort) and rid in listing:
                busy = listing[rid].get("job_execution_status") == "active"
                answers[rid] = RunnerActivity(rid, busy=busy)  # detail next round
                continue
            elif isinstance(outcome, BaseException):
                raise outcome
            if answers[rid].exists:
                self._busy_seen[rid] = answers[rid]
            else:
                self._busy_seen.pop(rid, None)
        return [answers[rid] for rid in ids]

    async def _jobs_of(self, runner_id: str, priority: Priority) -> RunnerActivity:
        """One request: the runner's newest jobs show both a running job and the last end.

        A runner takes jobs one at a time here (run-single), so a running job is among
        its newest; ``last_job_ended_at`` is the latest ``finished_at`` among them.
        """
        path = f"/runners/{quote(runner_id, safe='')}/jobs"
        query = {"order_by": "id", "sort": "desc", "per_page": 5}
        try:
            recent = await self._runner_call(
                priority, lambda: self._list(path, query, all_pages=False)
            )
        except RunnerNotFound:
            return RunnerActivity(runner_id, busy=False, exists=False)
        running = [j for j in recent if j.get("status") == "running"]
        if running:
            return RunnerActivity(runner_id, busy=True, current_job=str(running[0]["id"]))
        ended = [t for t in (parse_time(j.get("finished_at")) for j in recent) if t]
        return RunnerActivity(runner_id, busy=False, last_job_ended_at=max(ended, default=None))

    # -- webhooks ---------------------------------------------------------------------

    async def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Check ``X-Gitlab-Token``, then turn a Job Hook of a served project into a hint.

        A hook for a project outside the configured scopes is accepted but is no demand
        (issue 11.6). Hints are the caller's to keep; nothing is cached here.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        self._check_webhook_token(lowered.get("x-gitlab-token", ""))
        payload = _parse_json_object(body)
        event = lowered.get("x-gitlab-event", "")
        if event != "Job Hook":
            return WebhookResult(event=event or "unknown", nudge=False)
        job_id, project_id, status = _job_hook_fields(payload)
        event_name = f"Job Hook {status}"
        scope = _payload_scope(payload, project_id)
        if not self._in_scope(project_id, scope if scope != str(project_id) else ""):
            return WebhookResult(event=f"{event_name} (project not in scope)", nudge=False)
        if status in _NOT_WAITING:
            return WebhookResult(event=event_name, nudge=True, finished_job_ids=(str(job_id),))
        if status not in self._statuses():
            return WebhookResult(event=event_name, nudge=False)
        return WebhookResult(
            event=event_name, nudge=True, jobs=await self._hook_job(project_id, job_id, scope)
        )

    def _check_webhook_token(self, given: str) -> None:
        secret = self._options.webhook_secret
        if not secret:
            raise WebhookRejected(404, "webhooks are not configured for this forge")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise WebhookRejected(401, "bad X-Gitlab-Token")

    async def _hook_job(self, project_id: int, job_id: int, scope: str) -> tuple[PendingJob, ...]:
        """The job's tags (a Job Hook has none). A failed lookup only loses the hint."""
        path = f"/projects/{project_id}/jobs/{job_id}"
        try:
            job = await self._call(Priority.WEBHOOK, lambda: self._get(path))
        except ProviderError:
            return ()
        if job.get("status") not in self._statuses():
            return ()
        return (job_from_rest(job, scope),)

    # -- status -----------------------------------------------------------------------

    def health(self) -> ProviderHealth:
        """In-memory rate-limit view; never does I/O."""
        rate = self._http.rate
        wait = self._gate.remaining_wait()
        note = f"rate limited for {wait:.0f}s more" if wait > 0 else self._note
        return ProviderHealth(
            rate_limit_remaining=rate.remaining,
            rate_limit_limit=rate.limit,
            poll_interval_s=self._stretched,
            note=note,
            requests_total=self._http.requests_total,
            scope_errors=self._book.errors(),
            requests_by_class={p.name.lower(): n for p, n in self._budget.sent.items()},
            skipped_by_class={p.name.lower(): n for p, n in self._budget.skipped.items()},
        )

    async def aclose(self) -> None:
        """Close the HTTP session (waits for in-flight calls to end)."""
        await self._http.aclose()


def _runner_id(ref: RunnerRef) -> str:
    """GitLab hands out the id at registration, so a reference always carries one."""
    if ref.forge_id is None:
        raise PermanentProviderError(f"GitLab runner {ref} has no id (GitLab always gives one)")
    return ref.forge_id


def _parse_json_object(body: bytes) -> JSON:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(400, "body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


def _strict_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _job_hook_fields(payload: JSON) -> tuple[int, int, str]:
    """``(build_id, project_id, build_status)`` of a Job Hook, or 400."""
    if payload.get("object_kind") != "build":
        raise WebhookRejected(400, "Job Hook without object_kind 'build'")
    job_id = _strict_int(payload.get("build_id"))
    project_id = _strict_int(payload.get("project_id"))
    status = payload.get("build_status")
    if job_id is None or project_id is None or not isinstance(status, str):
        raise WebhookRejected(400, "Job Hook needs integer build_id/project_id and a status")
    if not re.fullmatch(r"[a-z_]+", status):
        raise WebhookRejected(400, "Job Hook build_status is not a status")
    return job_id, project_id, status


def _payload_scope(payload: JSON, project_id: int) -> str:
    project = payload.get("project")
    if isinstance(project, dict):
        path = project.get("path_with_namespace")
        if isinstance(path, str) and path:
            return path
    return str(project_id)
