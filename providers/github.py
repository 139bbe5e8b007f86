"""The GitHub (and GitHub Enterprise Server) adapter.

What is GitHub-specific lives here; budget, rate gate, deadline, ETags, redirect refusal
and the status -> error table are :mod:`providers.http`.

* **Requests go through our own ``requests.Session``** (the shared transport), not
  through PyGithub's ``Requester``: PyGithub offers no public per-client transport hook
  (only the process-global ``Requester.injectConnectionClasses``), its ``PaginatedList``
  sends no ``If-None-Match``, and the endpoints an autoscaler needs (repository JIT
  configs, registration tokens) are not wrapped. PyGithub is used for its credential
  object (``github.Auth``), which writes the ``Authorization`` header.
* **Polls are conditional**: every GET carries the ``ETag`` of its last answer, and an
  idle repository costs two ``304``\\ s per poll. They are free on the primary (hourly)
  limit but count on the secondary one, so the budget charges them like any request.
* **Hourly budget**: below ``low_rate_limit`` remaining, polls are spread until the reset
  (the last answers stand in between) and :meth:`GitHubProvider.health` says so.
* **Activity** is one listing of the runner scope's runners (``busy``, ``status``, 100 a
  page) per round, not one request per runner; by-name references resolve from it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from github import Auth

from providers.base import (
    ForgeKind,
    ForgeRunner,
    GitHubOptions,
    PendingJob,
    Provider,
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
from providers.budget import Budget, Priority, RateGate, Sleep
from providers.errors import (
    AccessDenied,
    HTTPStatusError,
    NotFound,
    PermanentProviderError,
    ProviderAuthError,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)
from providers.http import ForgeHTTP, Limits
from providers.scopes import ScopeBook, pacing, poll_scopes
from providers.wire import RateView, header, next_link, parse_time

T = TypeVar("T")

#: Where the reusable runner's ``config.sh`` and ``run.sh`` live (official image).
JIT_COMMAND = ("/home/runner/run.sh",)
#: docs/runner-contract.md: URL, name and labels are positional, never interpolated.
REUSABLE_SCRIPT = (
    '/home/runner/config.sh --unattended --disableupdate --url "$1" --name "$2" '
    '--labels "$3" --work _work && exec /home/runner/run.sh'
)
JIT_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"
TOKEN_ENV = "ACTIONS_RUNNER_INPUT_TOKEN"  # noqa: S105 - an env var name, not a secret

_QUEUED = "queued"
_RUN_STATUSES = ("queued", "in_progress")  # an in_progress run can still hold queued jobs
_MAX_PAGES = 100  # a guard against a Link loop; GitHub caps run searches at 1,000 results
_DEFAULT_CONCURRENCY = 4
_SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub: with no Retry-After and budget left, wait >= 60 s
_POLL_COST = 2  # a quiet repository: queued runs + in-progress runs


def endpoint_template(method: str, url: str, api_prefix: str = "") -> str:
    """``"GET /repos/:owner/:repo/actions/runs"`` for a request URL: low-cardinality.

    Owner, repository and organisation names become ``:owner``/``:repo``/``:org``; a
    numeric segment becomes ``:<singular of the previous segment>_id``.
    """
    path = urlsplit(url).path
    if api_prefix and path.startswith(api_prefix + "/"):
        path = path[len(api_prefix) :]
    parts = [p for p in path.split("/") if p]
    out: list[str] = []
    named = {"repos": (":owner", ":repo"), "orgs": (":org",), "users": (":user",)}
    i = 0
    while i < len(parts):
        part = parts[i]
        out.append(part)
        i += 1
        if len(out) == 1 and part in named:
            for placeholder in named[part]:
                if i < len(parts):
                    out.append(placeholder)
                    i += 1
        elif part.isdigit():
            prev = out[-2] if len(out) > 1 else ""
            out[-1] = f":{prev.removesuffix('s')}_id" if prev else ":id"
    return f"{method.upper()} /{'/'.join(out)}"


class MalformedAnswer(TransientProviderError):
    """GitHub (or a proxy in between) answered with a shape we cannot read."""


def _items(page: object, key: str) -> list[dict[str, Any]]:
    """``page[key]`` (or ``page`` itself for a bare list) as a list of objects."""
    items = page.get(key) if isinstance(page, dict) else page if key == "" else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedAnswer(f"GitHub answer without a list of {key or 'items'}")
    return items


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedAnswer(f"GitHub answer: {what} is not an integer")
    return value


def pending_job(job: Mapping[str, Any], repo: str) -> PendingJob:
    """A ``workflow_job`` (REST or webhook) as a :class:`PendingJob`."""
    labels = job.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise MalformedAnswer("job labels are not a list of strings")
    created = parse_time(job.get("created_at"))
    if created is None:
        raise MalformedAnswer("job without a readable created_at")
    return PendingJob(
        id=str(_int(job.get("id"), "job id")),
        scope=repo,
        tags=tuple(labels),
        created_at=created,
        pipeline=str(job.get("run_id", "")),
        name=str(job.get("name") or ""),
    )


class GitHubProvider:
    """A :class:`providers.base.Provider` for one GitHub or GHES.

    Scopes: ``options.repos`` (``owner/repo``) and ``options.orgs`` (all repositories of
    the organisation, listed again every ``repo_refresh_s``). Runners register at the
    first organisation if any is configured, else at the first repository (an org-level
    runner serves every repository of its org; a repo-level one only its repository).

    Reusable runners register themselves with ``config.sh``, so their numeric id is not
    known when :meth:`register_runner` returns (``forge_runner_id == ""``). For those,
    :meth:`runner_activity` and :meth:`unregister_runner` accept a by-name
    :class:`~providers.base.RunnerRef`; :meth:`runner_activity` answers in input order
    and puts the numeric id into ``forge_runner_id`` once the runner has registered
    (``exists=False`` before that), so the caller can store it.
    """

    kind = ForgeKind.GITHUB

    def __init__(
        self,
        options: GitHubOptions,
        *,
        observer: RequestObserver = ignore_request,
        max_concurrency: int = _DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.name = options.name
        self._options = options
        self._clock = clock
        self._prefix = runner_name_prefix(options.instance_id)
        self._api_url = options.api_url.rstrip("/")
        api_path = urlsplit(self._api_url).path.rstrip("/")
        self._budget = Budget(options.requests_per_minute, clock, sleep)
        self._gate = RateGate(
            clock,
            min_wait_s=options.min_retry_wait_s,
            max_wait_s=options.max_retry_wait_s,
            default_wait_s=_SECONDARY_LIMIT_WAIT_S,
        )
        self._http = ForgeHTTP(
            name=options.name,
            base_url=self._api_url,
            limits=Limits(
                request_timeout_s=options.request_timeout_s,
                call_deadline_s=options.call_deadline_s,
                min_wait_s=options.min_retry_wait_s,
                max_wait_s=options.max_retry_wait_s,
                max_concurrency=max_concurrency,
            ),
            budget=self._budget,
            gate=self._gate,
            rate=RateView("x-ratelimit-"),
            template=lambda method, url: endpoint_template(method, url, api_path),
            observer=observer,
        )
        session_headers: dict[str, str] = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "runner-orchestrator",
        }
        Auth.Token(options.token).authentication(session_headers)
        self._http.session.headers.update(session_headers)
        self._book = ScopeBook(clock)
        self._last_poll: float | None = None
        self._paced: float | None = None
        self._pace_note = ""
        self._org_repos: dict[str, tuple[float, list[str]]] = {}
        if options.orgs:
            self._runner_base = f"/orgs/{options.orgs[0]}/actions/runners"
            self._config_url = f"{options.web_url.rstrip('/')}/{options.orgs[0]}"
        elif options.repos:
            self._runner_base = f"/repos/{options.repos[0]}/actions/runners"
            self._config_url = f"{options.web_url.rstrip('/')}/{options.repos[0]}"
        else:
            self._runner_base = ""
            self._config_url = ""

    # ------------------------------------------------------------------ plumbing

    async def _call(self, priority: Priority, fn: Callable[[], T]) -> T:
        return await self._http.call(priority, fn)

    def _url(self, path: str) -> str:
        return path if "://" in path else f"{self._api_url}{path}"

    def _json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One request; error answers were already raised by the transport."""
        response = self._http.session.request(
            method, self._url(path), json=dict(body) if body is not None else None
        )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedAnswer(f"{self.name}: {method} {path} answered non-JSON") from exc

    def _pages(self, path: str, params: Mapping[str, str]) -> Iterator[Any]:
        """Every page of a list, each fetched conditionally (page 2 can change alone).

        Sorted, identical query strings between polls: a different URL has another ETag.
        ``Link`` URLs are followed as given (``/repositories/{id}/...`` forms included);
        the transport refuses one that points to another host.
        """
        url: str | None = self._url(f"{path}?{urlencode(sorted(params.items()))}")
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            response = self._http.session.get(url)
            try:
                yield response.json()
            except ValueError as exc:
                raise MalformedAnswer(f"{self.name}: GET {path} answered non-JSON") from exc
            url = next_link(header(response.headers, "link"))

    # ------------------------------------------------------------------ demand

    def _hourly_stretch(self) -> float | None:
        """Seconds between polls while the hourly budget runs low, else None.

        Fewer than ``low_rate_limit`` requests left: spread the rest until the reset,
        keeping a tenth of the low mark for registering and removing runners.
        """
        rate = self._http.rate
        remaining, reset = rate.remaining, rate.reset_epoch
        low = self._options.low_rate_limit
        if remaining is None or reset is None or remaining >= low:
            return None
        until_reset = max(reset - time.time(), 1.0)
        repos = max(len(self._book.labels), 1)
        polls = (remaining - low // 10) / (_POLL_COST * repos)
        return until_reset if polls < 1 else max(until_reset / polls, 0.0)

    async def _scope_repos(self) -> list[str]:
        repos: dict[str, None] = dict.fromkeys(self._options.repos)
        for org in self._options.orgs:
            fetched = self._org_repos.get(org)
            if fetched is None or self._clock() - fetched[0] > self._options.repo_refresh_s:
                priority = Priority.JOB_POLL if fetched is None else Priority.SWEEP
                try:
                    names = await self._call(priority, functools.partial(self._list_org_repos, org))
                except TransientProviderError:
                    if fetched is None:
                        raise
                    names = fetched[1]  # keep the last listing until the budget allows
                fetched = (self._clock(), names)
                self._org_repos[org] = fetched
            repos.update(dict.fromkeys(fetched[1]))
        return list(repos)

    def _list_org_repos(self, org: str) -> list[str]:
        names: list[str] = []
        for page in self._pages(f"/orgs/{org}/repos", {"per_page": "100"}):
            for repo in _items(page, ""):
                if not (repo.get("archived") or repo.get("disabled")):
                    names.append(str(repo.get("full_name")))
        return names

    def _poll_repo(self, repo: str) -> list[PendingJob]:
        """Queued jobs of one repository: runs queued or in progress, then their jobs."""
        found: dict[str, PendingJob] = {}
        seen_runs: set[int] = set()
        for status in _RUN_STATUSES:
            runs_path = f"/repos/{repo}/actions/runs"
            for page in self._pages(runs_path, {"status": status, "per_page": "100"}):
                for run in _items(page, "workflow_runs"):
                    run_id = _int(run.get("id"), "run id")
                    if run_id in seen_runs:
                        continue
                    seen_runs.add(run_id)
                    jobs_path = f"/repos/{repo}/actions/runs/{run_id}/jobs"
                    params = {"filter": "latest", "per_page": "100"}
                    for jobs_page in self._pages(jobs_path, params):
                        for job in _items(jobs_page, "jobs"):
                            if job.get("status") == _QUEUED:
                                pending = pending_job(job, repo)
                                found[pending.id] = pending
        return list(found.values())

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every queued job in the configured scopes (jobs, not runs).

        Repositories are polled within the job-poll budget, stalest first (the others
        keep their last answer). One that answers 403/404 is skipped with backoff and
        named in :meth:`health`; rate limits and auth errors fail the whole poll. While
        the hourly budget is low, answers from the last poll until the spread interval
        has passed.
        """
        self._gate.check(self.name)
        repos = await self._scope_repos()
        self._book.labels.update({r: r for r in repos})
        stretched = self._hourly_stretch()
        now = self._clock()
        last = self._last_poll
        if stretched is not None and last is not None and now - last < stretched:
            self._book.sync(repos)
            return self._book.jobs(repos)

        async def poll_one(repo: str) -> list[PendingJob]:
            return await self._call(Priority.JOB_POLL, lambda: self._poll_repo(repo))

        done = await poll_scopes(
            self._book,
            repos,
            poll_one,
            self._budget,
            cost_per_scope=_POLL_COST,
            verify_identity=self._verify_identity,
        )
        self._paced, self._pace_note = pacing(
            done, self._budget, "repositories", _POLL_COST, self._options.poll_interval_s
        )
        self._last_poll = now
        return self._book.jobs(repos)

    async def _verify_identity(self) -> None:
        """Every repository refused: is it the token? ``GET /rate_limit`` answers 200 to
        any valid token (PAT or App installation; ``GET /user`` refuses the latter) and
        costs nothing; only its 401 (raised as :class:`ProviderAuthError`) pauses. GHES
        with rate limiting off answers 404, which still proves the token."""
        try:
            await self._call(Priority.JOB_POLL, lambda: self._json("GET", "/rate_limit"))
        except NotFound:
            pass
        except AccessDenied as exc:
            raise ProviderAuthError(f"GitHub refused the token's identity check: {exc}") from exc

    # ------------------------------------------------------------------ runners

    def _require_runner_scope(self) -> str:
        if not self._runner_base:
            raise PermanentProviderError(f"{self.name}: no repository or organisation configured")
        return self._runner_base

    async def register_runner(self, request: RunnerRequest) -> Registration:
        """A JIT config (ephemeral) or a registration token for ``config.sh`` (reusable).

        The name must carry this instance's prefix, or :meth:`list_own_runners` could
        never find the registration again to clean it up.
        """
        base = self._require_runner_scope()
        if not request.name.startswith(self._prefix):
            raise PermanentProviderError(
                f"{self.name}: runner name {request.name!r} lacks prefix {self._prefix!r}"
            )
        labels = list(request.labels) or ["self-hosted"]
        if request.ephemeral:
            body = {
                "name": request.name,
                "runner_group_id": self._options.runner_group_id,
                "labels": labels,
                "work_folder": "_work",
            }
            try:
                data = await self._call(
                    Priority.REGISTRATION,
                    lambda: self._json("POST", f"{base}/generate-jitconfig", body),
                )
            except HTTPStatusError as exc:
                raise HTTPStatusError(
                    f"{exc} (generate-jitconfig {request.name})", exc.status
                ) from exc
            runner = data.get("runner") if isinstance(data, dict) else None
            credential = data.get("encoded_jit_config") if isinstance(data, dict) else None
            if not isinstance(runner, dict) or not isinstance(credential, str):
                raise MalformedAnswer(f"{self.name}: malformed JIT answer")
            return Registration(
                forge_runner_id=str(_int(runner.get("id"), "runner id")),
                name=request.name,
                command=JIT_COMMAND,
                credential=credential,
                credential_env=JIT_ENV,
            )
        data = await self._call(
            Priority.REGISTRATION, lambda: self._json("POST", f"{base}/registration-token")
        )
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise MalformedAnswer(f"{self.name}: malformed token answer")
        return Registration(
            forge_runner_id="",  # config.sh registers it; find it by RunnerRef.by_name
            name=request.name,
            command=(
                "/bin/sh",
                "-c",
                REUSABLE_SCRIPT,
                "sh",
                self._config_url,
                request.name,
                ",".join(labels),
            ),
            credential=token,
            credential_env=TOKEN_ENV,
        )

    def _runners(self, name: str = "") -> list[dict[str, Any]]:
        """The runner scope's runners (optionally filtered by exact name), every page."""
        base = self._require_runner_scope()
        params = {"per_page": "100", **({"name": name} if name else {})}
        found: list[dict[str, Any]] = []
        for page in self._pages(base, params):
            found.extend(r for r in _items(page, "runners") if not name or r.get("name") == name)
        return found

    def _delete(self, ref: RunnerRef) -> None:
        base = self._require_runner_scope()
        if ref.forge_id is None:
            matches = self._runners(ref.name)
            if not matches:
                raise RunnerNotFound(f"{self.name}: runner {ref} not registered")
            runner_id = str(_int(matches[0].get("id"), "runner id"))
        elif ref.forge_id.isdigit():
            runner_id = ref.forge_id
        else:
            raise PermanentProviderError(f"{self.name}: bad runner id {ref.forge_id!r}")
        try:
            self._json("DELETE", f"{base}/{runner_id}")
        except NotFound as exc:
            raise RunnerNotFound(f"{self.name}: runner {runner_id} is gone") from exc
        except HTTPStatusError as exc:
            if exc.status == 422:  # GitHub refuses to delete a runner with a job
                raise RunnerBusy(f"{self.name}: runner {runner_id} is busy") from exc
            raise

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Delete the registration (by id or by name); never a busy runner.

        There is no look-before-delete: GitHub's 422 on a busy runner is the only race-free
        answer, so it becomes :class:`RunnerBusy` (keep the runner).
        """
        ref = RunnerRef.of(runner)
        await self._call(Priority.REGISTRATION, lambda: self._delete(ref))

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy flag and online status from one listing, in input order.

        A runner not in the listing has ``exists=False`` (a by-name one keeps its
        ``name:`` text form in ``forge_runner_id`` until it has registered).
        """
        refs = [RunnerRef.of(r) for r in runners]
        if not refs:
            return []
        listing = await self._call(Priority.ACTIVITY, self._runners)
        by_id = {str(r.get("id")): r for r in listing}
        by_name = {str(r.get("name")): r for r in listing}
        answers: list[RunnerActivity] = []
        for ref in refs:
            found = by_name.get(ref.name) if ref.forge_id is None else by_id.get(ref.forge_id)
            if found is None:
                answers.append(RunnerActivity(forge_runner_id=str(ref), busy=False, exists=False))
                continue
            answers.append(
                RunnerActivity(
                    forge_runner_id=str(_int(found.get("id"), "runner id")),
                    busy=bool(found.get("busy")),
                    online=found.get("status") == "online",
                )
            )
        return answers

    def _list_own(self) -> list[ForgeRunner]:
        own: list[ForgeRunner] = []
        for runner in self._runners():
            name = str(runner.get("name", ""))
            if not name.startswith(self._prefix):
                continue  # another instance's or a human's runner: never touch it
            labels = tuple(
                str(label.get("name", "")) if isinstance(label, dict) else str(label)
                for label in runner.get("labels") or []
            )
            own.append(
                ForgeRunner(
                    id=str(_int(runner.get("id"), "runner id")),
                    name=name,
                    online=runner.get("status") == "online",
                    busy=bool(runner.get("busy")),
                    labels=labels,
                )
            )
        return own

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Registrations in the runner scope whose name carries this instance's prefix."""
        return await self._call(Priority.SWEEP, self._list_own)

    # ------------------------------------------------------------------ webhook

    def _in_scope(self, repo: str) -> bool:
        lowered = repo.lower()
        if any(lowered == r.lower() for r in self._options.repos):
            return True
        owner = lowered.split("/", 1)[0]
        return any(owner == o.lower() for o in self._options.orgs)

    async def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Verify ``X-Hub-Signature-256`` and read a ``workflow_job`` or ``ping`` delivery.

        No forge calls (GitHub wants an answer within 10 s) and nothing kept: the
        delivery is a hint for the caller. A job waiting for a deployment approval
        (action ``waiting``, or ``queued`` with ``status: waiting``) is not demand: no
        runner can take it until someone approves it. Out-of-scope repositories are
        ignored.
        """
        secret = self._options.webhook_secret
        if not secret:
            raise WebhookRejected(403, "no webhook secret configured")
        signature = header(headers, "X-Hub-Signature-256") or ""
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise WebhookRejected(401, "bad or missing X-Hub-Signature-256")
        event = header(headers, "X-GitHub-Event") or ""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise WebhookRejected(400, "body is not JSON") from exc
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        if event == "ping":
            return WebhookResult(event="ping", nudge=False)
        if event != "workflow_job":
            return WebhookResult(event=event or "unknown", nudge=False)
        action, job, repo = _workflow_job_fields(payload)
        name = f"workflow_job.{action}"
        if not self._in_scope(repo):
            return WebhookResult(event=name, nudge=False)
        if action == "queued" and job.get("status") in (None, "queued"):
            try:
                pending = pending_job(job, repo)
            except MalformedAnswer as exc:
                raise WebhookRejected(400, f"malformed workflow_job delivery: {exc}") from exc
            return WebhookResult(event=name, nudge=True, jobs=(pending,))
        if action in ("in_progress", "completed"):
            return WebhookResult(event=name, nudge=True, finished_job_ids=(str(job["id"]),))
        return WebhookResult(event=name, nudge=False)  # waiting (approval), queued+waiting

    # ------------------------------------------------------------------ health & close

    def health(self) -> ProviderHealth:
        """Rate-limit budget and the stretched poll interval, from memory only."""
        rate = self._http.rate
        stretched = self._hourly_stretch()
        notes: list[str] = [self._pace_note] if self._pace_note else []
        if stretched is not None and rate.reset_epoch is not None:
            reset_at = datetime.fromtimestamp(rate.reset_epoch, UTC).strftime("%H:%M:%SZ")
            notes.append(
                f"poll interval stretched to {stretched:.0f}s: "
                f"{rate.remaining} requests left until {reset_at}"
            )
        wait = self._gate.remaining_wait()
        if wait > 0:
            notes.append(f"rate limited for another {wait:.0f}s")
        errors = self._book.errors()
        if errors:
            notes.append("skipped repositories: " + ", ".join(sorted(errors)))
        return ProviderHealth(
            rate_limit_remaining=rate.remaining,
            rate_limit_limit=rate.limit,
            poll_interval_s=max(stretched or 0.0, self._paced or 0.0) or None,
            note="; ".join(notes),
            requests_total=self._http.requests_total,
            scope_errors=errors,
            demand_age_s=self._book.demand_age(),
            requests_by_class={p.name.lower(): n for p, n in self._budget.sent.items()},
            skipped_by_class={p.name.lower(): n for p, n in self._budget.skipped.items()},
        )

    async def aclose(self) -> None:
        """Close the session (after in-flight calls have returned or hit their deadline)."""
        await self._http.aclose()


def _workflow_job_fields(payload: Mapping[str, Any]) -> tuple[str, dict[str, Any], str]:
    """``(action, workflow_job, repository full_name)`` of a delivery, or 400."""
    action = payload.get("action")
    job = payload.get("workflow_job")
    repository = payload.get("repository")
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(action, str) or not isinstance(job, dict) or not isinstance(repo, str):
        raise WebhookRejected(400, "malformed workflow_job delivery: action/workflow_job/repo")
    job_id = job.get("id")
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise WebhookRejected(400, "malformed workflow_job delivery: workflow_job.id")
    return action, job, repo


if TYPE_CHECKING:  # mypy proves the adapter satisfies the seam, without a runtime cost

    def _is_a_provider(provider: GitHubProvider) -> Provider:
        return provider
