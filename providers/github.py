"""The GitHub (and GitHub Enterprise Server) adapter.

This is the only module that imports PyGithub. It uses PyGithub's ``Requester`` (the
low-level client under ``Github``) rather than its object model, because the things an
autoscaler needs are either not wrapped (repository JIT configs and registration tokens)
or cost rate limit on every poll (``PaginatedList`` sends no ``If-None-Match``).

How the budget is kept (GitHub allows 5,000 requests an hour for a token):

* Every poll GET is *conditional*: the ETag and body of each URL are cached, the next poll
  sends ``If-None-Match`` with the identical URL, and a ``304`` (free on GitHub) reuses
  the cached body. An idle repository costs two free requests per poll.
* The ``x-ratelimit-*`` headers of every answer are tracked. Below
  ``options.low_rate_limit`` remaining, the poll interval is stretched so the rest lasts
  until the reset; :meth:`GitHubProvider.pending_jobs` then answers from the last poll
  until the stretched interval has passed, and :meth:`GitHubProvider.health` says so.
* PyGithub never sleeps on our behalf: ``retry=None`` and no pause between requests. A
  403/429 with ``Retry-After`` (or ``remaining: 0``) raises :class:`RateLimited`, and
  further calls raise it again without a request until the wait is over.
* Every HTTP request is reported to the :data:`RequestObserver` from a hook on each
  client's ``requests.Session``, so PyGithub's own follow-ups are counted too.

PyGithub's connection object keeps per-request state, so one client must not be used by
two threads at once: the adapter keeps a small pool of clients, one per concurrent
thread, handed out under an :class:`asyncio.Semaphore`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar
from urllib.parse import urlencode, urlsplit

import requests
from github import Auth, Github, GithubException
from github.Requester import HTTPRequestsConnectionClass, HTTPSRequestsConnectionClass

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

log = logging.getLogger(__name__)

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


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    """Case-insensitive header lookup on any mapping (dict, CIMultiDict, requests')."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                value = val
                break
    return None if value is None else str(value)


def _float_header(headers: Mapping[str, Any], name: str) -> float | None:
    raw = _header(headers, name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _parse_time(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise TypeError("timestamp is not a string")
    parsed = datetime.fromisoformat(raw)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _next_link(link: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header."""
    if not link:
        return None
    for part in link.split(","):
        match = re.match(r'\s*<([^>]+)>\s*;.*rel="?next"?', part)
        if match:
            return match.group(1)
    return None


@dataclasses.dataclass
class _Cached:
    """One conditional GET: the validator and what it validated."""

    etag: str
    body: Any
    next_url: str | None
    used_at: float


class _NotFound(PermanentProviderError):
    """A 404: runner look-ups turn it into ``exists=False`` / :class:`RunnerNotFound`."""


class _Tap:
    """Sees every HTTP request of every client of one provider (from a session hook)."""

    def __init__(self, provider: GitHubProvider) -> None:
        self.provider = provider

    def response(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        method = response.request.method or "GET"
        self.provider._on_response(method, response.url, response.status_code, response.headers)

    def failure(self, method: str, url: str) -> None:
        self.provider._on_response(method, url, 0, {})


class _Observed:
    """Mixin for PyGithub's connection classes: our response hook on their session, and
    status 0 reported when the forge never answered."""

    tap: ClassVar[_Tap]
    session: requests.Session
    verb: str
    url: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.hooks["response"].append(self.tap.response)

    def getresponse(self) -> Any:
        try:
            return super().getresponse()  # type: ignore[misc]
        except requests.RequestException:
            self.tap.failure(self.verb, self.url)  # status 0: the forge never answered
            raise


class _ObservedHTTP(_Observed, HTTPRequestsConnectionClass):
    """PyGithub's HTTP connection, observed."""


class _ObservedHTTPS(_Observed, HTTPSRequestsConnectionClass):
    """PyGithub's HTTPS connection, observed."""


class GitHubProvider:
    """A :class:`providers.base.Provider` for one GitHub or GHES.

    Scopes: ``options.repos`` (``owner/repo``) and ``options.orgs`` (all repositories of
    the organisation, listed again every ``repo_refresh_s``). Runners register at the
    first organisation if any is configured, else at the first repository (an org-level
    runner serves every repository of its org; a repo-level one only its repository).

    Reusable runners register themselves with ``config.sh``, so their numeric id is not
    known when :meth:`register_runner` returns (``forge_runner_id == ""``). For those,
    :meth:`runner_activity` and :meth:`unregister_runner` accept a by-name
    :class:`~providers.base.RunnerRef` instead of an id; :meth:`runner_activity` answers
    in input order and puts the numeric id into ``forge_runner_id`` once the runner has
    registered (``exists=False`` before that), so the caller can store it.
    """

    kind = ForgeKind.GITHUB

    def __init__(
        self,
        options: GitHubOptions,
        *,
        observer: RequestObserver = ignore_request,
        max_concurrency: int = _DEFAULT_CONCURRENCY,
    ) -> None:
        self.name = options.name
        self._options = options
        self._observer = observer
        self._prefix = runner_name_prefix(options.instance_id)
        self._api_url = options.api_url.rstrip("/")
        self._api_path = urlsplit(self._api_url).path.rstrip("/")
        self._state_lock = threading.Lock()
        self._etags: dict[str, _Cached] = {}
        self._requests_total = 0
        self._billable = 0  # answers that (probably) used rate limit: all but 304s
        self._rate_remaining: int | None = None
        self._rate_limit: int | None = None
        self._rate_reset: float | None = None  # epoch seconds
        self._blocked_until = 0.0  # time.monotonic(); RateLimited until then
        self._last_poll: float | None = None
        self._poll_cost = 1
        self._cached_jobs: list[PendingJob] = []
        self._skipped_repos: list[str] = []
        self._hints: dict[str, tuple[float, PendingJob]] = {}  # from webhooks
        self._finished: dict[str, float] = {}  # job ids webhooks said are no longer queued
        self._org_repos: dict[str, tuple[float, list[str]]] = {}
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._closed = False
        self._concurrency = max_concurrency
        self._sem = asyncio.Semaphore(max_concurrency)
        self._clients: queue.SimpleQueue[Github] = queue.SimpleQueue()
        for _ in range(max_concurrency):
            self._clients.put(self._new_client())
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

    def _new_client(self) -> Github:
        """One PyGithub client with our observed connection class and no inline sleeps."""
        client = Github(
            auth=Auth.Token(self._options.token),
            base_url=self._api_url,
            timeout=max(1, math.ceil(self._options.request_timeout_s)),
            user_agent="runner-orchestrator",
            per_page=100,
            retry=None,  # never PyGithub's hour-long rate-limit sleep; we handle limits
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )
        tap = _Tap(self)
        http = type("ObservedHTTP", (_ObservedHTTP,), {"tap": tap})
        https = type("ObservedHTTPS", (_ObservedHTTPS,), {"tap": tap})
        requester = client.requester
        # PyGithub has no public per-client hook; the connection class is chosen per
        # scheme in Requester.__init__ (pinned <3, checked here so a change fails loudly).
        attr = "_Requester__connectionClass"
        if not hasattr(requester, attr):
            raise RuntimeError("PyGithub internals changed: cannot observe its requests")
        scheme = urlsplit(self._api_url).scheme
        setattr(requester, attr, https if scheme == "https" else http)
        return client

    def _on_response(self, method: str, url: str, status: int, headers: Mapping[str, Any]) -> None:
        """Count the request, remember the rate-limit headers, tell the observer."""
        with self._state_lock:
            self._requests_total += 1
            if status not in (0, 304):
                self._billable += 1
            remaining = _float_header(headers, "x-ratelimit-remaining")
            limit = _float_header(headers, "x-ratelimit-limit")
            reset = _float_header(headers, "x-ratelimit-reset")
            if remaining is not None:
                self._rate_remaining = int(remaining)
            if limit is not None:
                self._rate_limit = int(limit)
            if reset is not None:
                self._rate_reset = reset
            if remaining is not None and remaining <= 0 and reset is not None:
                # The next billable request would fail: do not even send it.
                self._block(max(reset - time.time(), 1.0))
        try:
            self._observer(self.name, endpoint_template(method, url, self._api_path), status)
        except Exception:  # an observer bug must not break forge calls
            log.exception("github.observer_failed")

    def _block(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)

    def _raise_if_blocked(self) -> None:
        """Refuse work without a request: closed, or still inside a rate-limit wait."""
        if self._closed:
            raise PermanentProviderError(f"{self.name}: provider is closed")
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            raise RateLimited(f"{self.name}: rate limited for another {wait:.0f}s", wait)

    def _error_for(self, status: int, headers: Mapping[str, Any], message: str) -> ProviderError:
        """The :mod:`providers.errors` exception for an HTTP error answer."""
        text = f"{self.name}: HTTP {status}: {message}".strip()
        retry_after = _float_header(headers, "retry-after")
        remaining = _float_header(headers, "x-ratelimit-remaining")
        reset = _float_header(headers, "x-ratelimit-reset")
        if status == 401:
            return ProviderAuthError(text)
        if status in (403, 429):
            wait: float | None = None
            if retry_after is not None:
                wait = max(retry_after, 0.0)
            elif remaining is not None and remaining <= 0:
                wait = max((reset or time.time() + 60) - time.time(), 1.0)
            elif status == 429 or "rate limit" in message.lower():
                wait = _SECONDARY_LIMIT_WAIT_S
            if wait is None:
                return ProviderAuthError(text)  # a plain 403: the token lacks a permission
            with self._state_lock:
                self._block(wait)
            return RateLimited(text, wait)
        if status >= 500 or status == 0:
            return TransientProviderError(text, retry_after)
        if status == 404:
            return _NotFound(text)
        return PermanentProviderError(text)

    def _raise_status(self, status: int, headers: Mapping[str, Any], body: str) -> NoReturn:
        message = body[:200]
        try:
            data = json.loads(body) if body else None
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                message = data["message"]
        except ValueError:
            pass
        raise self._error_for(status, headers, message)

    def _translate(self, exc: Exception) -> ProviderError:
        """Map a PyGithub/requests exception onto :mod:`providers.errors`."""
        if isinstance(exc, GithubException):
            data = exc.data
            message = exc.message or (
                data.get("message", "") if isinstance(data, dict) else str(data)
            )
            return self._error_for(exc.status, exc.headers or {}, str(message or ""))
        if isinstance(exc, requests.Timeout):
            return TransientProviderError(f"{self.name}: timeout: {exc}")
        if isinstance(exc, requests.RequestException):
            return TransientProviderError(f"{self.name}: connection failed: {exc}")
        if isinstance(exc, (KeyError, TypeError, ValueError)):
            # malformed JSON or unexpected shapes from the forge (or a proxy in between)
            return TransientProviderError(f"{self.name}: malformed answer: {exc!r}")
        return PermanentProviderError(f"{self.name}: {exc}")

    def _with_client(self, fn: Callable[[Github], T]) -> T:
        # Normally the semaphore leaves a client free. A cancelled caller releases the
        # semaphore while its thread still runs, so wait (bounded) for that thread.
        try:
            client = self._clients.get(timeout=2 * self._options.request_timeout_s + 5)
        except queue.Empty:
            raise TransientProviderError(f"{self.name}: all clients busy") from None
        try:
            return fn(client)
        except ProviderError:
            raise
        except (GithubException, requests.RequestException, KeyError, TypeError, ValueError) as exc:
            raise self._translate(exc) from exc
        finally:
            self._clients.put(client)

    async def _call(self, fn: Callable[[Github], T]) -> T:
        """Run blocking client code in a thread, at most ``max_concurrency`` at a time."""
        self._raise_if_blocked()
        async with self._sem:
            return await asyncio.to_thread(self._with_client, fn)

    def _url(self, path: str) -> str:
        return path if "://" in path else f"{self._api_url}{path}"

    def _cache_key(self, url: str) -> str:
        parts = urlsplit(self._url(url))
        return f"{parts.path}?{parts.query}"

    def _conditional_get(self, client: Github, url: str) -> _Cached:
        """GET with ``If-None-Match``; a 304 answers from the cache (and is free)."""
        key = self._cache_key(url)
        cached = self._etags.get(key)
        headers = {"If-None-Match": cached.etag} if cached else {}
        status, resp_headers, body = client.requester.requestJson(
            "GET", self._url(url), headers=headers
        )
        now = time.monotonic()
        if status == 304 and cached is not None:
            cached.used_at = now
            return cached
        if status != 200:
            self._raise_status(status, resp_headers, body)
        entry = _Cached(
            etag=_header(resp_headers, "etag") or "",
            body=json.loads(body),
            next_url=_next_link(_header(resp_headers, "link")),
            used_at=now,
        )
        with self._state_lock:
            if entry.etag:
                self._etags[key] = entry
            else:
                self._etags.pop(key, None)
        return entry

    def _pages(self, client: Github, path: str, params: Mapping[str, str]) -> Iterator[Any]:
        """Every page of a list, each fetched conditionally (page 2 can change alone)."""
        # Sorted, identical query strings between polls: a different URL has another ETag.
        url: str | None = f"{path}?{urlencode(sorted(params.items()))}"
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            page = self._conditional_get(client, url)
            yield page.body
            url = page.next_url

    def _check(
        self, client: Github, verb: str, path: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        """A non-conditional request through PyGithub; library errors translate above."""
        _headers, data = client.requester.requestJsonAndCheck(
            verb, path, input=dict(body) if body is not None else None
        )
        return data

    def _prune_cache(self) -> None:
        horizon = time.monotonic() - max(3600.0, 3 * self._options.repo_refresh_s)
        with self._state_lock:
            for key in [k for k, v in self._etags.items() if v.used_at < horizon]:
                del self._etags[key]
            cutoff = time.monotonic() - 3600.0
            for job_id in [k for k, at in self._finished.items() if at < cutoff]:
                del self._finished[job_id]

    # ------------------------------------------------------------------ demand

    def _stretched_interval(self) -> float | None:
        """Seconds between polls when something forces them further apart, or None.

        Two things can: the hourly budget (fewer than ``low_rate_limit`` requests left:
        spread the rest until the reset, keeping a tenth of the low mark for registering
        and removing runners), and the pace (``requests_per_minute``: a poll of many
        repos must not burst past GitHub's secondary limit). The longer one wins.
        """
        with self._state_lock:
            remaining, reset, cost = self._rate_remaining, self._rate_reset, self._poll_cost
        paced = max(cost, 1) * 60.0 / self._options.requests_per_minute
        budget: float | None = None
        if remaining is not None and reset is not None and remaining < self._options.low_rate_limit:
            until_reset = max(reset - time.time(), 1.0)
            polls = (remaining - self._options.low_rate_limit // 10) / max(cost, 1)
            budget = until_reset if polls < 1 else until_reset / polls
        longest = max(paced, budget or 0.0)
        if budget is None and paced <= self._options.poll_interval_s:
            return None  # the daemon's own interval is slower than any limit needs
        return longest

    async def _scope_repos(self) -> list[str]:
        repos: dict[str, None] = dict.fromkeys(self._options.repos)
        for org in self._options.orgs:
            fetched = self._org_repos.get(org)
            if fetched is None or time.monotonic() - fetched[0] > self._options.repo_refresh_s:
                names = await self._call(functools.partial(self._list_org_repos, org=org))
                fetched = (time.monotonic(), names)
                self._org_repos[org] = fetched
            repos.update(dict.fromkeys(fetched[1]))
        return list(repos)

    def _list_org_repos(self, client: Github, org: str) -> list[str]:
        names: list[str] = []
        for page in self._pages(client, f"/orgs/{org}/repos", {"per_page": "100"}):
            for repo in page:
                if not (repo.get("archived") or repo.get("disabled")):
                    names.append(str(repo["full_name"]))
        return names

    def _poll_repo(self, client: Github, repo: str) -> list[PendingJob]:
        """Queued jobs of one repository: runs queued or in progress, then their jobs."""
        found: dict[str, PendingJob] = {}
        seen_runs: set[int] = set()
        for status in _RUN_STATUSES:
            runs_path = f"/repos/{repo}/actions/runs"
            for page in self._pages(client, runs_path, {"status": status, "per_page": "100"}):
                for run in page["workflow_runs"]:
                    run_id = int(run["id"])
                    if run_id in seen_runs:
                        continue
                    seen_runs.add(run_id)
                    jobs_path = f"/repos/{repo}/actions/runs/{run_id}/jobs"
                    params = {"filter": "latest", "per_page": "100"}
                    for jobs_page in self._pages(client, jobs_path, params):
                        for job in jobs_page["jobs"]:
                            if job["status"] == _QUEUED:
                                pending = self._pending_job(job, repo)
                                found[pending.id] = pending
        return list(found.values())

    @staticmethod
    def _pending_job(job: Mapping[str, Any], repo: str) -> PendingJob:
        labels = job.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TypeError("job labels are not a list of strings")
        return PendingJob(
            id=str(int(job["id"])),
            scope=repo,
            tags=tuple(labels),
            created_at=_parse_time(job["created_at"]),
            pipeline=str(job.get("run_id", "")),
            name=str(job.get("name") or ""),
        )

    def _with_hints(self, jobs: Sequence[PendingJob], since: float | None) -> list[PendingJob]:
        """Poll results plus webhook hints newer than ``since``, minus finished jobs."""
        with self._state_lock:
            merged = {j.id: j for j in jobs}
            for job_id, (at, job) in self._hints.items():
                if since is None or at >= since:
                    merged.setdefault(job_id, job)
            return [j for j in merged.values() if j.id not in self._finished]

    async def pending_jobs(self) -> Sequence[PendingJob]:
        """Every queued job in the configured scopes (jobs, not runs).

        While the poll interval is stretched, answers from the last poll (plus webhook
        hints) until the stretched interval has passed. One repository that answers 404
        or 403-without-limit is skipped (and named in :meth:`health`); rate limits, auth
        and transient errors fail the whole poll.
        """
        self._raise_if_blocked()
        stretched = self._stretched_interval()
        if (
            stretched is not None
            and self._last_poll is not None
            and time.monotonic() - self._last_poll < stretched
        ):
            return self._with_hints(self._cached_jobs, None)
        started = time.monotonic()
        with self._state_lock:
            billable_before = self._billable
        repos = await self._scope_repos()
        results = await asyncio.gather(
            *(self._call(functools.partial(self._poll_repo, repo=r)) for r in repos),
            return_exceptions=True,
        )
        jobs: list[PendingJob] = []
        skipped: list[str] = []
        for repo, result in zip(repos, results, strict=True):
            if isinstance(result, PermanentProviderError):
                log.warning("github.repo_skipped repo=%s error=%s", repo, result)
                skipped.append(repo)
            elif isinstance(result, ProviderError):
                raise result
            elif isinstance(result, BaseException):
                raise self._translate(result) if isinstance(result, Exception) else result
            else:
                jobs.extend(result)
        with self._state_lock:
            self._poll_cost = max(self._billable - billable_before, 1)
            self._hints = {k: v for k, v in self._hints.items() if v[0] >= started}
        self._last_poll = started
        self._skipped_repos = skipped
        self._cached_jobs = jobs
        self._prune_cache()
        return self._with_hints(jobs, started)

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
                    lambda c: self._check(c, "POST", f"{base}/generate-jitconfig", body)
                )
            except PermanentProviderError as exc:
                raise PermanentProviderError(f"{exc} (generate-jitconfig {request.name})") from exc
            try:
                runner_id = str(int(data["runner"]["id"]))
                credential = str(data["encoded_jit_config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise TransientProviderError(f"{self.name}: malformed JIT answer") from exc
            return Registration(
                forge_runner_id=runner_id,
                name=request.name,
                command=JIT_COMMAND,
                credential=credential,
                credential_env=JIT_ENV,
            )
        data = await self._call(lambda c: self._check(c, "POST", f"{base}/registration-token"))
        try:
            token = str(data["token"])
        except (KeyError, TypeError) as exc:
            raise TransientProviderError(f"{self.name}: malformed token answer") from exc
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

    def _find_by_name(self, client: Github, name: str) -> dict[str, Any] | None:
        base = self._require_runner_scope()
        for page in self._pages(client, base, {"name": name, "per_page": "100"}):
            for runner in page["runners"]:
                if runner.get("name") == name:
                    return dict(runner)
        return None

    def _resolve(self, client: Github, ref: RunnerRef) -> str | None:
        """The numeric id for a reference (None: no such registration)."""
        if ref.forge_id is None:
            runner = self._find_by_name(client, ref.name)
            return None if runner is None else str(runner["id"])
        if not ref.forge_id.isdigit():
            raise PermanentProviderError(f"{self.name}: bad runner id {ref.forge_id!r}")
        return ref.forge_id

    def _delete(self, client: Github, ref: RunnerRef) -> None:
        base = self._require_runner_scope()
        runner_id = self._resolve(client, ref)
        if runner_id is None:
            raise RunnerNotFound(f"{self.name}: runner {ref} not registered")
        try:
            client.requester.requestJsonAndCheck("DELETE", f"{base}/{runner_id}")
        except GithubException as exc:
            if exc.status == 404:
                raise RunnerNotFound(f"{self.name}: runner {runner_id} is gone") from exc
            if exc.status == 422:  # GitHub refuses to delete a runner with a job
                raise RunnerBusy(f"{self.name}: runner {runner_id} is busy") from exc
            raise

    async def unregister_runner(self, runner: RunnerRef | str, *, force: bool = False) -> None:
        """Delete the registration (by id or by name); never a busy runner.

        There is no look-before-delete: GitHub's 422 on a busy runner is the only race-free
        answer, so it becomes :class:`RunnerBusy` (keep the runner).
        """
        ref = RunnerRef.of(runner)
        await self._call(lambda c: self._delete(c, ref))

    def _activity(self, client: Github, ref: RunnerRef) -> RunnerActivity:
        base = self._require_runner_scope()
        if ref.forge_id is None:
            runner = self._find_by_name(client, ref.name)
            if runner is None:
                return RunnerActivity(forge_runner_id=str(ref), busy=False, exists=False)
        else:
            if not ref.forge_id.isdigit():
                raise PermanentProviderError(f"{self.name}: bad runner id {ref.forge_id!r}")
            try:
                runner = self._conditional_get(client, f"{base}/{ref.forge_id}").body
            except _NotFound:
                return RunnerActivity(forge_runner_id=ref.forge_id, busy=False, exists=False)
        return RunnerActivity(
            forge_runner_id=str(runner["id"]),
            busy=bool(runner.get("busy")),
            online=runner.get("status") == "online",
        )

    async def runner_activity(self, runners: Sequence[RunnerRef | str]) -> Sequence[RunnerActivity]:
        """Busy flag and online status from GET runner, in input order (404: exists=False)."""
        refs = [RunnerRef.of(r) for r in runners]
        return await asyncio.gather(
            *(self._call(functools.partial(self._activity, ref=ref)) for ref in refs)
        )

    def _list_own(self, client: Github) -> list[ForgeRunner]:
        base = self._require_runner_scope()
        own: list[ForgeRunner] = []
        for page in self._pages(client, base, {"per_page": "100"}):
            for runner in page["runners"]:
                name = str(runner.get("name", ""))
                if not name.startswith(self._prefix):
                    continue  # another instance's or a human's runner: never touch it
                labels = tuple(
                    str(label.get("name", "")) if isinstance(label, dict) else str(label)
                    for label in runner.get("labels") or []
                )
                own.append(
                    ForgeRunner(
                        id=str(runner["id"]),
                        name=name,
                        online=runner.get("status") == "online",
                        busy=bool(runner.get("busy")),
                        labels=labels,
                    )
                )
        return own

    async def list_own_runners(self) -> Sequence[ForgeRunner]:
        """Registrations in the runner scope whose name carries this instance's prefix."""
        return await self._call(self._list_own)

    # ------------------------------------------------------------------ webhook

    def _in_scope(self, repo: str) -> bool:
        lowered = repo.lower()
        if any(lowered == r.lower() for r in self._options.repos):
            return True
        owner = lowered.split("/", 1)[0]
        return any(owner == o.lower() for o in self._options.orgs)

    async def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Verify ``X-Hub-Signature-256`` and read a ``workflow_job`` or ``ping`` delivery.

        No forge calls: GitHub wants an answer within 10 s, and the delivery is only a
        hint (the next poll is the truth). Jobs of repositories outside the scopes are
        ignored.
        """
        secret = self._options.webhook_secret
        if not secret:
            raise WebhookRejected(403, "no webhook secret configured")
        signature = _header(headers, "X-Hub-Signature-256") or ""
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise WebhookRejected(401, "bad or missing X-Hub-Signature-256")
        event = _header(headers, "X-GitHub-Event") or ""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookRejected(400, "body is not JSON") from exc
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        if event == "ping":
            return WebhookResult(event="ping", nudge=False)
        if event != "workflow_job":
            return WebhookResult(event=event or "unknown", nudge=False)
        try:
            action = payload["action"]
            job = payload["workflow_job"]
            repo = payload["repository"]["full_name"]
            if not isinstance(action, str) or not isinstance(job, dict):
                raise TypeError("action/workflow_job")
            if not isinstance(repo, str):
                raise TypeError("repository.full_name")
            job_id = job["id"]
            if not isinstance(job_id, int) or isinstance(job_id, bool):
                raise TypeError("workflow_job.id")
            pending = self._pending_job(job, repo) if action in ("queued", "waiting") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(400, f"malformed workflow_job delivery: {exc}") from exc
        name = f"workflow_job.{action}"
        if not self._in_scope(repo):
            return WebhookResult(event=name, nudge=False)
        now = time.monotonic()
        if pending is not None:
            with self._state_lock:
                self._hints[pending.id] = (now, pending)
            return WebhookResult(event=name, nudge=True, jobs=(pending,))
        if action in ("in_progress", "completed"):
            with self._state_lock:
                self._finished[str(job_id)] = now
                self._hints.pop(str(job_id), None)
            return WebhookResult(event=name, nudge=True, finished_job_ids=(str(job_id),))
        return WebhookResult(event=name, nudge=False)

    # ------------------------------------------------------------------ health & close

    def health(self) -> ProviderHealth:
        """Rate-limit budget and the stretched poll interval, from memory only."""
        stretched = self._stretched_interval()
        notes: list[str] = []
        with self._state_lock:
            remaining, limit, reset = self._rate_remaining, self._rate_limit, self._rate_reset
            total = self._requests_total
        low = remaining is not None and remaining < self._options.low_rate_limit
        if stretched is not None and low and reset is not None:
            reset_at = datetime.fromtimestamp(reset, UTC).strftime("%H:%M:%SZ")
            notes.append(
                f"poll interval stretched to {stretched:.0f}s: "
                f"{remaining} requests left until {reset_at}"
            )
        elif stretched is not None:
            notes.append(
                f"poll interval stretched to {stretched:.0f}s to stay under "
                f"{self._options.requests_per_minute} requests/min"
            )
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            notes.append(f"rate limited for another {wait:.0f}s")
        if self._skipped_repos:
            notes.append("skipped repositories: " + ", ".join(self._skipped_repos))
        return ProviderHealth(
            rate_limit_remaining=remaining,
            rate_limit_limit=limit,
            poll_interval_s=stretched,
            note="; ".join(notes),
            requests_total=total,
        )

    async def aclose(self) -> None:
        """Close every client's connection pool (after in-flight calls have returned)."""
        self._closed = True
        for _ in range(self._concurrency):  # wait until no call is running; never released
            await self._sem.acquire()
        clients: list[Github] = []
        while True:
            try:
                clients.append(self._clients.get_nowait())
            except queue.Empty:
                break
        for client in clients:
            await asyncio.to_thread(client.close)


if TYPE_CHECKING:  # mypy proves the adapter satisfies the seam, without a runtime cost

    def _is_a_provider(provider: GitHubProvider) -> Provider:
        return provider
