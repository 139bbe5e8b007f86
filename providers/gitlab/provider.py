"""The GitLab provider: demand (project polls, instance GraphQL) and Job Hooks.

Request plumbing is :mod:`providers.http` (through :mod:`.client`); runner registration,
retirement and activity are :mod:`.runners`.

* **Demand**: ``GET /projects/:id/jobs?scope[]=pending`` per project (groups expanded to
  projects, refreshed every ``group_refresh_s`` as a sweep), polled within the job-poll
  budget by :func:`providers.scopes.poll_scopes` (a 403/404 project is skipped, not the
  forge); GraphQL ``jobs(statuses: PENDING)`` for an admin instance scope. With
  ``graphql_poll``, up to 100 projects per GraphQL request first (:mod:`.graphql`), REST
  for whatever that poll cannot vouch for.
* **Job Hooks** of a configured project become a hint with the job's tags (one
  ``GET /projects/:id/jobs/:job_id`` at webhook priority: the hook has none); a hook for a
  project outside the scopes is no demand (issue 11.6). Nothing is cached here.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from providers.base import (
    ForgeKind,
    GitLabOptions,
    PendingJob,
    ProviderHealth,
    RequestObserver,
    RunnersVia,
    WebhookResult,
    ignore_request,
)
from providers.budget import Priority, Sleep
from providers.errors import (
    AccessDenied,
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    WebhookRejected,
)
from providers.gitlab.client import JSON, GitLabClient
from providers.gitlab.graphql import GraphQLPoll
from providers.gitlab.parse import (
    Project,
    job_from_graphql,
    job_from_rest,
    job_hook_fields,
    parse_json_object,
    payload_scope,
)
from providers.gitlab.runners import GitLabRunners
from providers.scopes import ScopeBook, pacing, poll_scopes

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


class GitLabProvider(RunnersVia):
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
        self._client = GitLabClient(options, observer=observer, clock=clock, sleep=sleep)
        self._runners = GitLabRunners(self._client, options)
        self._book = ScopeBook(clock)
        self._note = ""
        self._stretched: float | None = None
        self._poll_cost: int | None = None
        self._instance_result: list[PendingJob] | None = None
        self._instance_at: float | None = None
        self._group_projects: list[Project] = []
        self._groups_fetched_at: float | None = None
        self._capped: dict[str, int] = {}
        self._graphql = (
            GraphQLPoll(self._client, self._statuses, clock) if options.graphql_poll else None
        )

    # -- scopes -----------------------------------------------------------------------

    async def _projects(self) -> list[Project]:
        """Configured projects plus the (cached) projects of configured groups."""
        configured = [Project(key=p, scope=p) for p in self._options.projects]
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
            projects = await self._client.call(priority, self._expand_groups)
        except ProviderError:
            if fetched is None:
                raise
            return
        self._group_projects = projects
        self._groups_fetched_at = self._clock()

    def _expand_groups(self) -> list[Project]:
        found: dict[str, Project] = {}
        query = {"include_subgroups": "true", "with_shared": "false", "archived": "false"}
        for group in self._options.groups:
            for project in self._client.list(f"/groups/{quote(group, safe='')}/projects", query):
                key = str(project["id"])
                scope = str(project.get("path_with_namespace") or key)
                found[key] = Project(key=key, scope=scope)
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

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every waiting job: GraphQL for an admin instance scope, else project polls."""
        self._client.gate.check(self.name)
        has_scopes = bool(self._options.projects or self._options.groups)
        if self._options.instance:
            try:
                jobs = await self._instance_jobs()
            except PermanentProviderError:
                if not has_scopes:
                    raise
                jobs = []  # GraphQL refused the query: poll the configured scopes instead
            if jobs or not has_scopes:
                self._poll_cost = 1
                return jobs
        return await self._poll_projects()

    def _statuses(self) -> list[str]:
        return ["pending", "created"] if self._options.include_created else ["pending"]

    async def _instance_jobs(self) -> list[PendingJob]:
        """GraphQL ``jobs(statuses: PENDING)``: empty for non-admins, as GitLab answers.

        Within the budget like project polls: with no token left, the last answer stands.
        """
        if self._instance_result is not None and not self._client.budget.available():
            return self._instance_result
        self._instance_result = await self._client.call(Priority.JOB_POLL, self._graphql_jobs)
        self._instance_at = self._clock()
        return self._instance_result

    def _graphql_jobs(self) -> list[PendingJob]:
        statuses = [s.upper() for s in self._statuses()]
        url = self._client.gl.url.rstrip("/") + "/api/graphql"
        jobs: list[PendingJob] = []
        after: str | None = None
        while True:
            payload = {"query": _GRAPHQL_JOBS, "variables": {"statuses": statuses, "after": after}}
            answer = self._client.post(url, payload)
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

        only: set[str] | None = None
        if self._graphql is not None and self._graphql.usable():
            self._book.sync(keys)
            stalest = [by_key[k] for k in self._book.due(keys)]
            answers, only = await self._graphql.poll(stalest, self._client.budget)
            for key, jobs in answers.items():
                self._book.answered(key, jobs)
        done = await poll_scopes(
            self._book,
            keys,
            poll_one,
            self._client.budget,
            verify_identity=self._verify_identity,
            only=only,
        )
        self._stretched, self._note = pacing(done, self._client.budget, "projects")
        if self._graphql is not None and only is not None:
            self._poll_cost = self._graphql.requests_for(keys) + len(only)
        else:
            self._poll_cost = len(keys)
        if self._graphql is not None and self._graphql.note:
            self._note = "; ".join(n for n in (self._note, self._graphql.note) if n)
        return self._book.jobs(keys)

    async def _poll_one(self, project: Project) -> list[PendingJob]:
        """One project's waiting jobs, at most ``max_jobs_per_scope`` of them."""
        path = f"/projects/{quote(project.key, safe='')}/jobs"
        query: JSON = {"scope[]": self._statuses()}
        cap = max(1, self._options.max_jobs_per_scope)
        raw = await self._client.call(
            Priority.JOB_POLL, lambda: self._client.first(path, query, cap + 1)
        )
        if len(raw) > cap:
            self._capped[project.scope] = cap
            raw = raw[:cap]
        else:
            self._capped.pop(project.scope, None)
        return [job_from_rest(j, project.scope) for j in raw if j.get("status") in self._statuses()]

    async def _verify_identity(self) -> None:
        """Every project refused: is it the token? ``GET /user`` (401/403: pause the forge)."""
        try:
            await self._client.call(Priority.JOB_POLL, lambda: self._client.get("/user"))
        except AccessDenied as exc:
            raise ProviderAuthError(f"GitLab refused the token's identity check: {exc}") from exc

    async def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Check ``X-Gitlab-Token``, then turn a Job Hook of a served project into a hint.

        A hook for a project outside the configured scopes is accepted but is no demand
        (issue 11.6). Hints are the caller's to keep; nothing is cached here.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        self._check_webhook_token(lowered.get("x-gitlab-token", ""))
        payload = parse_json_object(body)
        event = lowered.get("x-gitlab-event", "")
        if event != "Job Hook":
            return WebhookResult(event=event or "unknown", nudge=False)
        job_id, project_id, status = job_hook_fields(payload)
        event_name = f"Job Hook {status}"
        scope = payload_scope(payload, project_id)
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
            job = await self._client.call(Priority.WEBHOOK, lambda: self._client.get(path))
        except ProviderError:
            return ()
        if job.get("status") not in self._statuses():
            return ()
        return (job_from_rest(job, scope),)

    def health(self) -> ProviderHealth:
        """In-memory rate-limit view; never does I/O."""
        rate = self._client.http.rate
        wait = self._client.gate.remaining_wait()
        note = f"rate limited for {wait:.0f}s more" if wait > 0 else self._note
        return ProviderHealth(
            rate_limit_remaining=rate.remaining,
            rate_limit_limit=rate.limit,
            poll_interval_s=self._stretched,
            note=note,
            requests_total=self._client.http.requests_total,
            scope_errors=self._book.errors(),
            demand_age_s=self._demand_age(),
            jobs_capped=dict(self._capped),
            poll_cost=self._poll_cost,
            budget_per_minute=self._options.requests_per_minute,
            requests_by_class={p.name.lower(): n for p, n in self._client.budget.sent.items()},
            skipped_by_class={p.name.lower(): n for p, n in self._client.budget.skipped.items()},
        )

    def _demand_age(self) -> float | None:
        if self._options.instance and self._instance_at is not None:
            return self._clock() - self._instance_at
        return self._book.demand_age()

    async def aclose(self) -> None:
        """Close the HTTP session (waits for in-flight calls to end)."""
        await self._client.http.aclose()
