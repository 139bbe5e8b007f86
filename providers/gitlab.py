"""GitLab adapter: pending jobs, runner registration, activity and job webhooks.

Why it looks the way it does:

* **python-gitlab is synchronous** and sleeps by itself on 429 (up to ~100 s). Every call
  here runs in a worker thread (``asyncio.to_thread``) under a semaphore, with
  ``obey_rate_limit=False`` and ``max_retries=0``, so the library never sleeps; a 429
  becomes :class:`~providers.errors.RateLimited` and the provider refuses further calls
  until ``Retry-After`` has passed, without blocking the event loop or shutdown.
* **Every HTTP request is seen**: a transport adapter mounted on ``gl.session`` reports
  each request (and connection errors as status 0) to the observer, charges the request
  budget and remembers the rate-limit headers. Hooking below the library means pagination
  pages and anything else python-gitlab sends are never missed.
* **Budget**: GitLab limits ``GET /projects/:id/jobs`` to 600/min/user. A token bucket
  (:class:`_Budget`) keeps the provider under ``requests_per_minute`` in *any* 60 s window.
  A poll covers only the projects the budget allows, least recently polled first; the
  last result of every other project is kept, so the demand stays complete.
* **Errors are translated at the edge** (:func:`_translate_errors`); nothing of
  ``gitlab`` or ``requests`` leaks out of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.exceptions
import requests
from requests.adapters import HTTPAdapter

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
from providers.errors import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)

T = TypeVar("T")
JSON = dict[str, Any]

#: How many forge calls may run in worker threads at once (per provider).
MAX_CONCURRENT_CALLS = 4
#: Page size for every list call: fewer pages means fewer requests against the budget.
PER_PAGE = 100
#: When a 429 carries neither Retry-After nor RateLimit-Reset, wait this long.
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

# ---------------------------------------------------------------------------------------
# Request budget


class _Budget:
    """Token bucket that keeps every 60 s window at or under ``per_minute`` requests.

    The burst (``capacity``) is a sixth of the budget and the refill rate is the rest
    spread over a minute, so ``capacity + 60 * rate == per_minute``: even a full burst
    followed by steady polling stays inside the limit. Requests are charged when sent
    (the balance may go negative, e.g. for registrations, which polling then pays back);
    polls only *start* while a whole token is available.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        per_minute = max(1, per_minute)
        self.capacity = max(1.0, per_minute / 6)
        self.rate = max(per_minute - self.capacity, 1.0) / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> int:
        """Whole requests that may start now."""
        with self._lock:
            self._refill()
            return max(0, int(self._tokens))

    def charge(self, n: float = 1.0) -> None:
        """Account for a request that was sent."""
        with self._lock:
            self._refill()
            self._tokens -= n


# ---------------------------------------------------------------------------------------
# Transport hook: observe, charge and remember rate-limit headers for every request


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


@dataclasses.dataclass
class _RateState:
    """Rate-limit facts seen in responses (shared between threads, written under a lock)."""

    remaining: int | None = None
    limit: int | None = None
    requests_total: int = 0


class _ObservingAdapter(HTTPAdapter):
    """``requests`` transport that reports every request before python-gitlab sees it."""

    def __init__(self, provider: GitLabProvider) -> None:
        super().__init__()
        self._provider = provider

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        template = endpoint_template(request.method or "GET", request.url or "")
        try:
            response = super().send(request, *args, **kwargs)
        except Exception:
            self._provider._seen(template, 0, None)
            raise
        self._provider._seen(template, response.status_code, response.headers)
        return response


# ---------------------------------------------------------------------------------------
# Error translation


def _header_float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else parsed.timestamp() - time.time()


def retry_after_from(headers: Mapping[str, str] | None) -> float:
    """Seconds to wait after a 429: ``Retry-After``, else ``RateLimit-Reset``, else a default."""
    if headers:
        with contextlib.suppress(TypeError, ValueError):
            retry_after = _header_float(headers, "Retry-After")
            if retry_after is not None:
                return max(0.0, retry_after)
            reset = _header_float(headers, "RateLimit-Reset")
            if reset is not None:
                return max(0.0, reset - time.time())
    return DEFAULT_RETRY_AFTER_S


@contextlib.contextmanager
def _translate_errors(
    last_headers: Callable[[], Mapping[str, str] | None],
    not_found: type[ProviderError] = PermanentProviderError,
) -> Iterator[None]:
    """Turn python-gitlab / requests errors into :mod:`providers.errors`.

    ``last_headers`` gives the headers of the last response on this thread (python-gitlab
    errors carry no headers, and a 429's ``Retry-After`` lives there).
    """
    try:
        yield
    except gitlab.exceptions.GitlabAuthenticationError as exc:
        raise ProviderAuthError(f"GitLab rejected the token: {exc}") from exc
    except gitlab.exceptions.GitlabParsingError as exc:
        raise TransientProviderError(f"GitLab sent an unparsable answer: {exc}") from exc
    except gitlab.exceptions.GitlabError as exc:
        raise _from_status(exc.response_code, str(exc), last_headers(), not_found) from exc
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise TransientProviderError(f"GitLab unreachable: {exc}") from exc
    except requests.RequestException as exc:
        raise TransientProviderError(f"GitLab request failed: {exc}") from exc


def _from_status(
    status: int | None,
    message: str,
    headers: Mapping[str, str] | None,
    not_found: type[ProviderError],
) -> ProviderError:
    """The error for one HTTP status (see the tree in :mod:`providers.errors`)."""
    if status in (401, 403):
        return ProviderAuthError(f"GitLab {status}: {message}")
    if status == 404:
        return not_found(f"GitLab 404: {message}")
    if status == 429:
        return RateLimited(f"GitLab 429: {message}", retry_after=retry_after_from(headers))
    if status is None or status >= 500 or status in (408, 409):
        return TransientProviderError(f"GitLab {status}: {message}")
    return PermanentProviderError(f"GitLab {status}: {message}")


# ---------------------------------------------------------------------------------------
# Parsing helpers


def parse_time(value: object) -> datetime | None:
    """GitLab timestamps (``2026-11-23T09:00:00.000Z``) as aware datetimes."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    ) -> None:
        self.name = options.name
        self._options = options
        self._observer = observer
        self._clock = clock
        self._prefix = runner_name_prefix(options.instance_id)
        self._budget = _Budget(options.requests_per_minute, clock)
        self._rate = _RateState()
        self._rate_lock = threading.Lock()
        self._local = threading.local()
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        self._blocked_until = 0.0
        self._note = ""
        self._stretched: float | None = None
        self._instance_result: list[PendingJob] | None = None
        self._group_projects: list[_Project] = []
        self._groups_fetched_at: float | None = None
        self._results: dict[str, list[PendingJob]] = {}
        self._polled_at: dict[str, float] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._gl = gitlab.Gitlab(
            options.url,
            private_token=options.token,
            timeout=options.request_timeout_s,
            retry_transient_errors=False,
            per_page=PER_PAGE,
        )
        adapter = _ObservingAdapter(self)
        self._gl.session.mount("http://", adapter)
        self._gl.session.mount("https://", adapter)

    # -- plumbing ---------------------------------------------------------------------

    def _seen(self, template: str, status: int, headers: Mapping[str, str] | None) -> None:
        """Called by the transport for every request, in a worker thread.

        So the observer runs in that thread too: it must be thread-safe (prometheus
        counters are) and cheap.
        """
        self._local.headers = headers
        self._budget.charge()
        with self._rate_lock:
            self._rate.requests_total += 1
            if headers is not None:
                self._remember_rate_headers(headers, limited=status == 429)
        with contextlib.suppress(Exception):  # metrics must never break a forge call
            self._observer(self.name, template, status)

    def _remember_rate_headers(self, headers: Mapping[str, str], *, limited: bool) -> None:
        """Keep the budget GitLab reports; a 429 means 0 left until its window ends.

        Concurrent answers arrive in any order, so while a 429's wait is running an
        earlier, more optimistic ``RateLimit-Remaining`` does not overwrite the 0.
        """
        waiting = self._blocked_until > self._clock()
        with contextlib.suppress(TypeError, ValueError):
            if limited:
                self._rate.remaining = 0
                wait = retry_after_from(headers)
                self._blocked_until = max(self._blocked_until, self._clock() + wait)
            elif "RateLimit-Remaining" in headers and not waiting:
                self._rate.remaining = int(headers["RateLimit-Remaining"])
            if "RateLimit-Limit" in headers:
                self._rate.limit = int(headers["RateLimit-Limit"])
            if self._rate.remaining == 0 and "RateLimit-Reset" in headers:
                wait = retry_after_from({"RateLimit-Reset": headers["RateLimit-Reset"]})
                self._blocked_until = max(self._blocked_until, self._clock() + wait)

    def _last_headers(self) -> Mapping[str, str] | None:
        return cast("Mapping[str, str] | None", getattr(self._local, "headers", None))

    def _guarded(self, fn: Callable[[], T], not_found: type[ProviderError]) -> T:
        """Run ``fn`` in this (worker) thread with library errors translated."""
        self._local.headers = None
        with _translate_errors(self._last_headers, not_found):
            return fn()

    def _check_blocked(self) -> None:
        """Refuse calls while GitLab told us to wait, instead of sleeping."""
        wait = self._blocked_until - self._clock()
        if wait > 0:
            raise RateLimited(f"GitLab rate limit: waiting {wait:.0f}s more", retry_after=wait)

    async def _run(
        self, fn: Callable[[], T], not_found: type[ProviderError] = PermanentProviderError
    ) -> T:
        """One blocking forge call in a thread, bounded, translated, rate-limit aware."""
        self._check_blocked()
        async with self._sem:
            try:
                return await asyncio.to_thread(self._guarded, fn, not_found)
            except RateLimited as exc:
                wait = DEFAULT_RETRY_AFTER_S if exc.retry_after is None else exc.retry_after
                self._blocked_until = max(self._blocked_until, self._clock() + wait)
                raise

    def _list(self, path: str, query: JSON | None = None, *, all_pages: bool = True) -> list[JSON]:
        """GET a list endpoint, following ``Link: rel=next`` when ``all_pages``."""
        query = {"per_page": PER_PAGE, **(query or {})}
        result = self._gl.http_list(
            path,
            query_data=query,
            get_all=all_pages,
            obey_rate_limit=False,
            max_retries=0,
        )
        return [item for item in result if isinstance(item, dict)]

    def _get(self, path: str) -> JSON:
        result = self._gl.http_get(path, obey_rate_limit=False, max_retries=0)
        if not isinstance(result, dict):
            raise PermanentProviderError(f"GitLab answered {path} with a non-object")
        return result

    def _post(self, path: str, data: JSON) -> JSON:
        result = self._gl.http_post(path, post_data=data, obey_rate_limit=False, max_retries=0)
        if not isinstance(result, dict):
            raise PermanentProviderError(f"GitLab answered {path} with a non-object")
        return result

    def _put(self, path: str, data: JSON) -> JSON:
        result = self._gl.http_put(path, post_data=data, obey_rate_limit=False, max_retries=0)
        if not isinstance(result, dict):
            raise PermanentProviderError(f"GitLab answered {path} with a non-object")
        return result

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

        A failed refresh keeps the previous expansion; only the very first one raises.
        """
        fetched = self._groups_fetched_at
        if fetched is not None and self._clock() - fetched < self._options.group_refresh_s:
            return
        try:
            projects = await self._run(self._expand_groups)
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

    # -- pending jobs -----------------------------------------------------------------

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every waiting job: GraphQL for an admin instance scope, else project polls."""
        self._check_blocked()
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
        self._instance_result = await self._run(self._graphql_jobs)
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
        keys = {p.key for p in projects}
        for stale in set(self._results) - keys:
            self._results.pop(stale, None)
            self._polled_at.pop(stale, None)
        due = sorted(projects, key=lambda p: self._polled_at.get(p.key, float("-inf")))
        batch = due[: self._budget.available()]
        outcomes = await asyncio.gather(*(self._poll_one(p) for p in batch), return_exceptions=True)
        self._settle(batch, outcomes)
        self._note_budget(len(batch), len(projects))
        return [job for p in projects for job in self._results.get(p.key, ())]

    def _note_budget(self, polled: int, total: int) -> None:
        """When a poll cannot cover every project, say how stale the demand may get."""
        if polled >= total:
            self._stretched = None
            return
        self._stretched = total / self._budget.rate  # seconds to poll every project once
        self._note = f"polled {polled} of {total} projects (budget)"

    async def _poll_one(self, project: _Project) -> list[PendingJob]:
        path = f"/projects/{quote(project.key, safe='')}/jobs"
        query = {"scope[]": self._statuses()}
        raw = await self._run(lambda: self._list(path, query))
        return [job_from_rest(j, project.scope) for j in raw if j.get("status") in self._statuses()]

    def _settle(self, batch: Sequence[_Project], outcomes: Sequence[object]) -> None:
        """Store results; re-raise what must reach the daemon (limits, auth, total outage)."""
        now = self._clock()
        transient: list[TransientProviderError] = []
        for project, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, list):
                self._results[project.key] = outcome
                self._polled_at[project.key] = now
            elif isinstance(outcome, RateLimited | ProviderAuthError):
                raise outcome
            elif isinstance(outcome, TransientProviderError):
                transient.append(outcome)
            elif isinstance(outcome, PermanentProviderError):
                self._polled_at[project.key] = now  # do not retry it first next time
                self._results.pop(project.key, None)  # its old jobs are not demand any more
                self._note = f"project {project.scope}: {outcome}"
            elif isinstance(outcome, BaseException):
                raise outcome
        if transient and len(transient) == len(batch):
            raise transient[0]

    # -- runners ----------------------------------------------------------------------

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """``POST /user/runners`` with a runner type that fits the scope."""
        data: JSON = {
            "description": request.name,
            "tag_list": list(request.labels),
            "run_untagged": request.run_untagged,
            **await self._runner_owner(),
        }
        created = await self._run(lambda: self._post("/user/runners", data))
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
            entity = await self._run(lambda: self._get(f"/{kind}/{quote(ref, safe='')}"))
            cached = self._ids[(kind, ref)] = int(entity["id"])
        return cached

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
        entity = await self._run(lambda: self._get(path), RunnerNotFound)
        if not str(entity.get("description") or "").startswith(self._prefix):
            raise PermanentProviderError(
                f"runner {forge_runner_id} was not created by this instance; not deleting it"
            )
        if force:
            await self._run(lambda: self._delete(path), RunnerNotFound)
            return
        await self._run(lambda: self._put(path, {"paused": True}), RunnerNotFound)
        activity = await self._activity(forge_runner_id)
        if activity.busy:
            await self._run(lambda: self._put(path, {"paused": False}), RunnerNotFound)
            raise RunnerBusy(f"runner {forge_runner_id} is running job {activity.current_job}")
        await self._run(lambda: self._delete(path), RunnerNotFound)

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Runners whose description starts with this instance's prefix."""
        runners = await self._all_runners()
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

    async def _all_runners(self) -> list[JSON]:
        """``/runners/all`` for an admin instance scope, else (or when refused) ``/runners``."""
        if self._options.instance:
            try:
                return await self._run(lambda: self._list("/runners/all"))
            except ProviderAuthError:
                pass  # not an admin after all: the runners this user manages still count
        return await self._run(lambda: self._list("/runners"))

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy while a job runs on it; ``last_job_ended_at`` from its latest finished job."""
        ids = [_runner_id(RunnerRef.of(r)) for r in runners]
        outcomes = await asyncio.gather(
            *(self._activity(rid) for rid in ids), return_exceptions=True
        )
        for outcome in outcomes:  # all calls have ended: no stray task outlives this call
            if isinstance(outcome, BaseException):
                raise outcome
        return cast("list[RunnerActivity]", outcomes)

    async def _activity(self, runner_id: str) -> RunnerActivity:
        """One request: the runner's newest jobs show both a running job and the last end.

        A runner takes jobs one at a time here (run-single), so a running job is among
        its newest; ``last_job_ended_at`` is the latest ``finished_at`` among them.
        """
        path = f"/runners/{quote(runner_id, safe='')}/jobs"
        try:
            recent = await self._run(
                lambda: self._list(
                    path, {"order_by": "id", "sort": "desc", "per_page": 5}, all_pages=False
                ),
                RunnerNotFound,
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
        """Check ``X-Gitlab-Token``, then turn a Job Hook into demand hints."""
        lowered = {k.lower(): v for k, v in headers.items()}
        self._check_webhook_token(lowered.get("x-gitlab-token", ""))
        payload = _parse_json_object(body)
        event = lowered.get("x-gitlab-event", "")
        if event != "Job Hook":
            return WebhookResult(event=event or "unknown", nudge=False)
        job_id, project_id, status = _job_hook_fields(payload)
        event_name = f"Job Hook {status}"
        if status in _NOT_WAITING:
            return WebhookResult(event=event_name, nudge=True, finished_job_ids=(str(job_id),))
        if status not in self._statuses():
            return WebhookResult(event=event_name, nudge=False)
        scope = _payload_scope(payload, project_id)
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
            job = await self._run(lambda: self._get(path))
        except ProviderError:
            return ()
        if job.get("status") not in self._statuses():
            return ()
        return (job_from_rest(job, scope),)

    # -- status -----------------------------------------------------------------------

    def health(self) -> ProviderHealth:
        """In-memory rate-limit view; never does I/O."""
        with self._rate_lock:
            rate = dataclasses.replace(self._rate)
        wait = self._blocked_until - self._clock()
        note = f"rate limited for {wait:.0f}s more" if wait > 0 else self._note
        return ProviderHealth(
            rate_limit_remaining=rate.remaining,
            rate_limit_limit=rate.limit,
            poll_interval_s=self._stretched,
            note=note,
            requests_total=rate.requests_total,
        )

    async def aclose(self) -> None:
        """Close the HTTP session (waits for in-flight calls to release the semaphore)."""
        for _ in range(MAX_CONCURRENT_CALLS):
            await self._sem.acquire()
        try:
            await asyncio.to_thread(self._gl.session.close)
        finally:
            for _ in range(MAX_CONCURRENT_CALLS):
                self._sem.release()


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
