"""The GitHub provider: demand (repository polls) and ``workflow_job`` deliveries.

Request plumbing is :mod:`providers.http` (through :mod:`.client`); runners are
:mod:`.runners`.

* **Polls are conditional**: every GET carries the ``ETag`` of its last answer, and an
  idle repository costs two ``304``\\ s per poll. They are free on the primary (hourly)
  limit but count on the secondary one, so the budget charges them like any request.
* Repositories are polled within the job-poll budget, stalest first; a 403/404 one is
  skipped with backoff (``health().scope_errors``); only a refused token pauses.
* **Hourly budget**: below ``low_rate_limit`` remaining, polls are spread until the reset
  (the last answers stand in between) and :meth:`GitHubProvider.health` says so.
* **Deliveries** are parsed, never kept: a job waiting for a deployment approval is no
  demand (issue 11.6); out-of-scope repositories are ignored.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from providers.base import (
    ForgeKind,
    GitHubOptions,
    PendingJob,
    Provider,
    ProviderHealth,
    RequestObserver,
    RunnersVia,
    WebhookResult,
    ignore_request,
)
from providers.budget import Priority, Sleep
from providers.errors import (
    AccessDenied,
    NotFound,
    ProviderAuthError,
    TransientProviderError,
    WebhookRejected,
)
from providers.github.client import DEFAULT_CONCURRENCY, GitHubClient
from providers.github.parse import (
    MalformedAnswer,
    int_field,
    items,
    pending_job,
    workflow_job_fields,
)
from providers.github.runners import GitHubRunners
from providers.scopes import ScopeBook, pacing, poll_scopes
from providers.wire import header

_QUEUED = "queued"
_RUN_STATUSES = ("queued", "in_progress")  # an in_progress run can still hold queued jobs
_POLL_COST = 2  # a full poll of a repository: queued runs + in-progress runs
#: A quiet repository (its newest runs all completed) is asked one cheap question a round:
#: are its newest runs still all completed? Any new run of any status is among the newest,
#: so one request sees it; only then is it polled in full (issue 15: half the idle cost).
_PROBE_RUNS = 10
#: A re-run of an older run does not become one of the newest: a quiet repository is
#: still polled in full this often (seconds), as a safety net.
_QUIET_FULL_EVERY_S = 300.0


class GitHubProvider(RunnersVia):
    """A :class:`providers.base.Provider` for one GitHub or GHES.

    Scopes: ``options.repos`` (``owner/repo``) and ``options.orgs`` (all repositories of
    the organisation, listed again every ``repo_refresh_s``). A runner registers where the
    job it is started for can reach it (:attr:`RunnerRequest.scope`): at the job's
    organisation if that is configured (an org-level runner serves every repository of
    its org), else at the job's repository (a repo-level one serves only its repository);
    a runner for no job registers at the first organisation, else the first repository.

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
        max_concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = options.name
        self._options = options
        self._clock = clock
        self._client = GitHubClient(
            options, observer=observer, max_concurrency=max_concurrency, clock=clock, sleep=sleep
        )
        self._runners = GitHubRunners(self._client, options)
        self._book = ScopeBook(clock)
        self._last_poll: float | None = None
        self._paced: float | None = None
        self._pace_note = ""
        self._org_repos: dict[str, tuple[float, list[str]]] = {}
        self._capped: dict[str, int] = {}  # written from worker threads, one key each
        self._busy: set[str] = set()  # repositories whose last look found runs not completed
        self._full_at: dict[str, float] = {}  # repository -> last full poll (clock)

    # ------------------------------------------------------------------ demand

    def _hourly_stretch(self) -> float | None:
        """Seconds between polls while the hourly budget runs low, else None.

        Fewer than ``low_rate_limit`` requests left: spread the rest until the reset,
        keeping a tenth of the low mark for registering and removing runners.
        """
        rate = self._client.http.rate
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
                    names = await self._client.call(
                        priority, functools.partial(self._list_org_repos, org)
                    )
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
        for page in self._client.pages(f"/orgs/{org}/repos", {"per_page": "100"}):
            for repo in items(page, ""):
                if not (repo.get("archived") or repo.get("disabled")):
                    names.append(str(repo.get("full_name")))
        return names

    def _quiet_now(self, repo: str) -> bool:
        """One request: are the repository's newest runs all completed (nothing can be
        queued, but for a re-run of an older run, which the periodic full poll sees)?"""
        if repo in self._busy or repo not in self._full_at:
            return False
        if self._clock() - self._full_at[repo] >= _QUIET_FULL_EVERY_S:
            return False
        page = self._client.json(
            "GET", f"/repos/{repo}/actions/runs", {"per_page": str(_PROBE_RUNS)}
        )
        return all(run.get("status") == "completed" for run in items(page, "workflow_runs"))

    def _poll_repo(self, repo: str) -> list[PendingJob]:
        """Queued jobs of one repository (runs queued or in progress, then their jobs), at
        most ``max_jobs_per_scope`` of them; a quiet repository costs one request."""
        if self._quiet_now(repo):
            self._capped.pop(repo, None)
            return []
        return self._poll_repo_fully(repo)

    def _poll_repo_fully(self, repo: str) -> list[PendingJob]:
        cap = max(1, self._options.max_jobs_per_scope)
        self._full_at[repo] = self._clock()
        found: dict[str, PendingJob] = {}
        seen_runs: set[int] = set()
        for status in _RUN_STATUSES:
            runs_path = f"/repos/{repo}/actions/runs"
            for page in self._client.pages(runs_path, {"status": status, "per_page": "100"}):
                for run in items(page, "workflow_runs"):
                    run_id = int_field(run.get("id"), "run id")
                    if run_id in seen_runs:
                        continue
                    seen_runs.add(run_id)
                    jobs_path = f"/repos/{repo}/actions/runs/{run_id}/jobs"
                    params = {"filter": "latest", "per_page": "100"}
                    for jobs_page in self._client.pages(jobs_path, params):
                        for job in items(jobs_page, "jobs"):
                            if job.get("status") == _QUEUED:
                                pending = pending_job(job, repo)
                                found[pending.id] = pending
                        if len(found) > cap:  # issue 12.8: never read a huge backlog whole
                            self._capped[repo] = cap
                            self._busy.add(repo)
                            return list(found.values())[:cap]
        self._capped.pop(repo, None)
        if seen_runs:
            self._busy.add(repo)
        else:
            self._busy.discard(repo)
        return list(found.values())

    def _round_cost(self, repos: Sequence[str]) -> int:
        """Requests one round of these repositories costs now: a full poll for busy ones
        (and ones never polled), the one-request probe for quiet ones."""
        full = sum(1 for r in repos if r in self._busy or r not in self._full_at)
        return _POLL_COST * full + (len(repos) - full)

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every queued job in the configured scopes (jobs, not runs).

        Repositories are polled within the job-poll budget, stalest first (the others
        keep their last answer). One that answers 403/404 is skipped with backoff and
        named in :meth:`health`; rate limits and auth errors fail the whole poll. While
        the hourly budget is low, answers from the last poll until the spread interval
        has passed.
        """
        self._client.gate.check(self.name)
        repos = await self._scope_repos()
        self._book.labels.update({r: r for r in repos})
        stretched = self._hourly_stretch()
        now = self._clock()
        last = self._last_poll
        if stretched is not None and last is not None and now - last < stretched:
            self._book.sync(repos)
            return self._book.jobs(repos)

        async def poll_one(repo: str) -> list[PendingJob]:
            return await self._client.call(Priority.JOB_POLL, lambda: self._poll_repo(repo))

        cost = math.ceil(self._round_cost(repos) / max(1, len(repos)))
        done = await poll_scopes(
            self._book,
            repos,
            poll_one,
            self._client.budget,
            cost_per_scope=cost,
            verify_identity=self._verify_identity,
        )
        self._paced, self._pace_note = pacing(
            done, self._client.budget, "repositories", cost, self._options.poll_interval_s
        )
        self._last_poll = now
        return self._book.jobs(repos)

    async def _verify_identity(self) -> None:
        """Every repository refused: is it the token? ``GET /rate_limit`` answers 200 to
        any valid token (PAT or App installation; ``GET /user`` refuses the latter) and
        costs nothing; only its 401 (raised as :class:`ProviderAuthError`) pauses. GHES
        with rate limiting off answers 404, which still proves the token."""
        try:
            await self._client.call(
                Priority.JOB_POLL, lambda: self._client.json("GET", "/rate_limit")
            )
        except NotFound:
            pass
        except AccessDenied as exc:
            raise ProviderAuthError(f"GitHub refused the token's identity check: {exc}") from exc

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
        action, job, repo = workflow_job_fields(payload)
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

    def health(self) -> ProviderHealth:
        """Rate-limit budget and the stretched poll interval, from memory only."""
        rate = self._client.http.rate
        stretched = self._hourly_stretch()
        notes: list[str] = [self._pace_note] if self._pace_note else []
        if stretched is not None and rate.reset_epoch is not None:
            reset_at = datetime.fromtimestamp(rate.reset_epoch, UTC).strftime("%H:%M:%SZ")
            notes.append(
                f"poll interval stretched to {stretched:.0f}s: "
                f"{rate.remaining} requests left until {reset_at}"
            )
        wait = self._client.gate.remaining_wait()
        if wait > 0:
            notes.append(f"rate limited for another {wait:.0f}s")
        errors = self._book.errors()
        if errors:  # all of them are in scope_errors; the note names a bounded few
            named = sorted(errors)[:5]
            more = f" and {len(errors) - len(named)} more" if len(errors) > len(named) else ""
            notes.append("skipped repositories: " + ", ".join(named) + more)
        return ProviderHealth(
            rate_limit_remaining=rate.remaining,
            rate_limit_limit=rate.limit,
            poll_interval_s=max(stretched or 0.0, self._paced or 0.0) or None,
            note="; ".join(notes),
            requests_total=self._client.http.requests_total,
            scope_errors=errors,
            demand_age_s=self._book.demand_age(),
            jobs_capped=dict(self._capped),
            poll_cost=self._round_cost(list(self._book.labels)) if self._book.labels else None,
            budget_per_minute=self._options.requests_per_minute,
            requests_by_class={p.name.lower(): n for p, n in self._client.budget.sent.items()},
            skipped_by_class={p.name.lower(): n for p, n in self._client.budget.skipped.items()},
        )

    async def aclose(self) -> None:
        """Close the session (after in-flight calls have returned or hit their deadline)."""
        await self._client.http.aclose()


if TYPE_CHECKING:  # mypy proves the adapter satisfies the seam, without a runtime cost

    def _is_a_provider(provider: GitHubProvider) -> Provider:
        return provider
