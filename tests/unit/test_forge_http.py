"""The shared forge-request layer under hostile answers (issues 11.3, 11.5, 12.3d).

Each test draws the fault it guards against; several run a tiny HTTP server on loopback
because the fault lives in the socket (a trickle, a redirect to another port).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import responses
import structlog.testing

from providers.base import GitHubOptions, GitLabOptions, RunnerRequest, runner_name_prefix
from providers.budget import Budget, BudgetShort, Priority, RateGate
from providers.errors import (
    AccessDenied,
    DeadlineExceeded,
    RateLimited,
    TransientProviderError,
    UnsafeRedirect,
)
from providers.github import GitHubProvider
from providers.gitlab import GitLabProvider

GL = "http://gl.test"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gitlab(clock: Clock | None = None, **kw: Any) -> GitLabProvider:
    fields: dict[str, Any] = {
        "name": "gl",
        "url": GL,
        "token": "glpat-secret",
        "instance_id": "u1",
        "projects": ("1",),
    }
    fields.update(kw)
    return GitLabProvider(GitLabOptions(**fields), clock=clock or Clock())


# -- clamped waits (11.3) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("1e15", 900.0),  # used to raise OverflowError in every reconcile
        ("86400", 900.0),  # used to pause the forge for a day
        ("-5", 1.0),
        ("0", 1.0),
        ("soon", 30.0),  # garbage: GitLab's default guess
        ("inf", 30.0),
        ("nan", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),  # a date in the past
        ("120", 120.0),
    ],
)
@responses.activate
async def test_every_retry_after_is_clamped(retry_after: str, expected: float) -> None:
    responses.get(f"{GL}/api/v4/runners", status=429, headers={"Retry-After": retry_after})
    with pytest.raises(RateLimited) as caught:
        await gitlab().list_own_runners()
    assert caught.value.retry_after == expected


@responses.activate
async def test_the_clamp_is_configurable() -> None:
    responses.get(f"{GL}/api/v4/runners", status=429, headers={"Retry-After": "86400"})
    with pytest.raises(RateLimited) as caught:
        await gitlab(min_retry_wait_s=5, max_retry_wait_s=60).list_own_runners()
    assert caught.value.retry_after == 60


def test_a_guessed_wait_grows_while_refusals_continue_and_resets_after() -> None:
    clock = Clock()
    gate = RateGate(clock, min_wait_s=1, max_wait_s=900, default_wait_s=60)
    assert [gate.refused(None) for _ in range(6)] == [60, 120, 240, 480, 900, 900]
    gate.accepted()
    assert gate.refused(None) == 60


# -- rate limits read right (11.5) ----------------------------------------------------


@responses.activate
async def test_gitlab_429_with_nothing_leaves_remaining_unknown() -> None:
    """One bare 429 used to set the gauge to 0 for good (RateLimitLow fired forever)."""
    responses.get(f"{GL}/api/v4/runners", status=429)
    responses.get(f"{GL}/api/v4/runners", status=429, headers={"Retry-After": "2"})
    clock = Clock()
    provider = gitlab(clock)
    for _ in range(2):
        with pytest.raises(RateLimited):
            await provider.list_own_runners()
        clock.now += 1000
    assert provider.health().rate_limit_remaining is None


GH = "https://gh.test/api/v3"


def github(clock: Clock | None = None, **kw: Any) -> GitHubProvider:
    fields: dict[str, Any] = {
        "name": "gh",
        "token": "ghp_secret",
        "instance_id": "u1",
        "api_url": GH,
        "repos": ("octo/app",),
    }
    fields.update(kw)
    return GitHubProvider(GitHubOptions(**fields), clock=clock or Clock())


ABUSE = (
    "You have triggered an abuse detection mechanism. Please wait a few minutes before "
    "you try again."
)


@responses.activate
async def test_github_abuse_wording_is_a_rate_limit_with_a_growing_wait() -> None:
    """It used to be taken as an auth failure and pause the forge."""
    responses.post(
        f"{GH}/repos/octo/app/actions/runners/registration-token",
        status=403,
        json={"message": ABUSE},
    )
    clock = Clock()
    provider = github(clock)
    request = RunnerRequest(
        name=runner_name_prefix("u1") + "a",
        pool="p",
        labels=("self-hosted",),
        run_untagged=False,
        ephemeral=False,
    )
    with pytest.raises(RateLimited) as first:
        await provider.register_runner(request)
    assert first.value.retry_after == 60
    clock.now += 61  # the wait has passed
    with pytest.raises(RateLimited) as second:
        await provider.register_runner(request)
    assert second.value.retry_after == 120


@responses.activate
async def test_github_secondary_pacing_counts_304s() -> None:
    """A 304 is free on the primary limit only; the budget must count it."""
    responses.get(
        f"{GH}/repos/octo/app/actions/runs",
        json={"total_count": 0, "workflow_runs": []},
        headers={"ETag": '"v1"'},
    )
    clock = Clock()
    provider = github(clock)
    await provider.pending_jobs()
    sent = provider.health().requests_by_class["job_poll"]
    responses.replace(responses.GET, f"{GH}/repos/octo/app/actions/runs", status=304)
    clock.now += 300  # a fresh minute, and a full poll of the quiet repository is due
    await provider.pending_jobs()
    assert responses.calls[-1].request.headers["If-None-Match"] == '"v1"'
    assert provider.health().requests_by_class["job_poll"] == sent + 2


@responses.activate
async def test_a_plain_403_is_access_denied_not_auth() -> None:
    responses.get(f"{GL}/api/v4/runners", status=403, json={"message": "403 Forbidden"})
    with pytest.raises(AccessDenied):
        await gitlab().list_own_runners()


# -- priorities (11.2) ------------------------------------------------------------------


async def test_activity_and_sweeps_only_spend_the_top_of_the_bucket() -> None:
    clock = Clock()
    budget = Budget(300, clock)  # burst 50
    for _ in range(30):
        budget.charge(Priority.JOB_POLL)
    # 20 left: a sweep (needs half the burst) is skipped, activity (a quarter) may go
    with pytest.raises(BudgetShort):
        await budget.admit(Priority.SWEEP, 0)
    await budget.admit(Priority.ACTIVITY, 0)
    for _ in range(8):
        budget.charge(Priority.ACTIVITY)
    with pytest.raises(BudgetShort):
        await budget.admit(Priority.ACTIVITY, 0)
    await budget.admit(Priority.JOB_POLL, 0)  # the poll still has its share
    assert budget.skipped[Priority.SWEEP] == budget.skipped[Priority.ACTIVITY] == 1


# -- loopback servers: trickle and cross-host redirect -------------------------------------


class _Server:
    """A one-handler HTTP server on 127.0.0.1 in a thread; records what it received."""

    def __init__(self, handler: Any) -> None:
        self.received: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.received.append(dict(self.headers.items()))
                handler(self)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    made: list[_Server] = []
    yield made
    for server in made:
        server.close()


def _trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "200")
    handler.end_headers()
    try:
        for _ in range(200):  # one byte every 0.2 s: each read is fast, the whole is not
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:
        pass  # the client gave up: that is the point


async def test_a_trickling_forge_cannot_hold_a_call_past_its_deadline(
    servers: list[_Server],
) -> None:
    """Timeouts are per read; a byte every few seconds used to freeze every reconcile."""
    server = _Server(_trickle)
    servers.append(server)
    provider = gitlab(url=server.url, call_deadline_s=1.0, request_timeout_s=5.0)
    with pytest.raises(DeadlineExceeded):
        await provider.list_own_runners()
    await provider.aclose()  # returns: the worker thread stopped reading at the deadline


def _redirect_to(target: str) -> Any:
    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", target + handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return handle


def _ok(handler: http.server.BaseHTTPRequestHandler) -> None:
    body = json.dumps([]).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


async def test_gitlab_refuses_a_cross_host_redirect_and_never_sends_the_token(
    servers: list[_Server],
) -> None:
    """python-gitlab follows redirects and re-sends PRIVATE-TOKEN to the new host."""
    other = _Server(_ok)
    forge = _Server(_redirect_to(other.url))
    servers.extend([other, forge])
    provider = gitlab(url=forge.url)
    with pytest.raises(UnsafeRedirect, match="refused a redirect"):
        await provider.list_own_runners()
    assert forge.received and forge.received[0].get("PRIVATE-TOKEN") == "glpat-secret"
    assert other.received == []  # the token never arrived there (nothing did)
    await provider.aclose()


async def test_github_refuses_a_cross_host_redirect_and_never_sends_the_token(
    servers: list[_Server],
) -> None:
    other = _Server(_ok)
    forge = _Server(_redirect_to(other.url))
    servers.extend([other, forge])
    provider = GitHubProvider(
        GitHubOptions(
            name="gh", token="ghp_secret", instance_id="u1", api_url=forge.url, repos=("o/r",)
        )
    )
    with pytest.raises(UnsafeRedirect):
        await provider.list_own_runners()
    assert other.received == []
    await provider.aclose()


@responses.activate
async def test_a_link_to_another_host_is_not_followed() -> None:
    responses.get(
        f"{GH}/repos/octo/app/actions/runners",
        json={"total_count": 1, "runners": []},
        headers={"Link": '<https://evil.test/api/v3/repositories/1/runners?page=2>; rel="next"'},
    )
    with pytest.raises(UnsafeRedirect):
        await github().list_own_runners()
    assert len(responses.calls) == 1


def _stall(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "10")
    handler.end_headers()
    handler.wfile.write(b"[")
    handler.wfile.flush()
    time.sleep(1.5)  # longer than one read may wait


def _cut(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.wfile.write(b"[1,")
    handler.wfile.flush()
    handler.close_connection = True


@pytest.mark.parametrize("handler", [_stall, _cut], ids=["read-timeout", "cut-short"])
async def test_a_body_that_stalls_or_is_cut_short_is_transient_not_a_bug(
    servers: list[_Server], handler: Any
) -> None:
    """The body is read below requests, so urllib3's errors must be mapped there too."""
    server = _Server(handler)
    servers.append(server)
    provider = gitlab(url=server.url, request_timeout_s=0.5, call_deadline_s=10.0)
    with pytest.raises(TransientProviderError):
        await provider.list_own_runners()
    await provider.aclose()


def test_the_etag_cache_is_bounded_in_bytes_not_only_entries() -> None:
    from providers.wire import Entry, EtagCache

    cache = EtagCache(max_entries=100, max_bytes=1600)
    for i in range(10):
        cache.put(f"u{i}", Entry('"e"', {}, b"x" * 100))
    assert len(cache) == 10
    for i in range(10, 30):
        cache.put(f"u{i}", Entry('"e"', {}, b"x" * 100))
    assert len(cache) == 16  # 1600 bytes
    assert cache.get("u0") is None and cache.get("u29") is not None
    cache.put("big", Entry('"e"', {}, b"x" * 101))  # over a sixteenth: never kept
    assert cache.get("big") is None


async def test_a_registration_waits_for_budget_but_only_a_few_seconds() -> None:
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    budget = Budget(60, clock, sleep)  # burst 10, refill 50/min
    for _ in range(10):
        budget.charge(Priority.JOB_POLL)
    started = clock.now
    await budget.admit(Priority.REGISTRATION, 60)  # needs 2 tokens: ~2.4 s of refill
    assert 0 < clock.now - started <= 5
    for _ in range(30):
        budget.charge(Priority.REGISTRATION)  # deep in debt: ~36 s to recover
    with pytest.raises(BudgetShort):
        await budget.admit(Priority.REGISTRATION, 60)  # gives up after its 5 s, not 60


@responses.activate
async def test_a_failing_request_observer_is_logged_not_fatal_to_the_call() -> None:
    """The metrics hook must not break a forge call, but its bug is not hidden either."""
    responses.get(f"{GL}/api/v4/runners/all", json=[])

    def observer(forge: str, endpoint: str, status: int) -> None:
        raise ZeroDivisionError("a metrics bug")

    provider = GitLabProvider(
        GitLabOptions(name="gl", url=GL, token="glpat-secret", instance_id="u1", instance=True),
        observer=observer,
        clock=Clock(),
    )
    with structlog.testing.capture_logs() as logs:
        assert list(await provider.list_own_runners()) == []
    failed = [e for e in logs if e["event"] == "forge.observer_failed"]
    assert failed and failed[0]["log_level"] == "error" and failed[0]["exc_info"]
