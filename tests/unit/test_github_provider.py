"""GitHubProvider, one call at a time, against ``responses`` mocks.

PyGithub puts the port into every URL it sends (``https://gh.test:443/api/v3/...``), so
the mocks are registered with a regex that allows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from providers.base import GitHubOptions, Provider, RunnerRequest, runner_name_prefix
from providers.errors import (
    PermanentProviderError,
    ProviderAuthError,
    RateLimited,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)
from providers.github import GitHubProvider, endpoint_template

API = "https://gh.test/api/v3"
PREFIX = runner_name_prefix("u1")
NOW = "2026-11-23T10:00:00Z"


def url(path: str) -> re.Pattern[str]:
    """Match ``https://gh.test[:443]/api/v3<path>`` with any query string."""
    return re.compile(r"https://gh\.test(:443)?/api/v3" + re.escape(path) + r"(\?.*)?$")


def rate_headers(remaining: int = 4000, reset: float | None = None) -> dict[str, str]:
    return {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(int(reset if reset is not None else time.time() + 3600)),
    }


def job(
    job_id: int, run_id: int, status: str = "queued", labels: tuple[str, ...] = ("linux",)
) -> dict[str, Any]:
    return {
        "id": job_id,
        "run_id": run_id,
        "status": status,
        "labels": list(labels),
        "created_at": NOW,
        "name": f"job{job_id}",
    }


def runner_json(
    runner_id: int, name: str, *, busy: bool = False, status: str = "online"
) -> dict[str, Any]:
    return {
        "id": runner_id,
        "name": name,
        "os": "Linux",
        "status": status,
        "busy": busy,
        "labels": [{"id": 1, "name": "self-hosted", "type": "read-only"}],
    }


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def seen() -> list[tuple[str, str, int]]:
    return []


def make(seen: list[tuple[str, str, int]] | None = None, **overrides: Any) -> GitHubProvider:
    fields: dict[str, Any] = {
        "name": "gh",
        "token": "ghp_x",
        "instance_id": "u1",
        "api_url": API,
        "web_url": "https://gh.test",
        "repos": ("octo/app",),
        "webhook_secret": "s3cret",
    }
    fields.update(overrides)
    options = GitHubOptions(**fields)
    if seen is None:
        return GitHubProvider(options)
    return GitHubProvider(options, observer=lambda f, e, s: seen.append((f, e, s)))


def req(name: str = "a", *, ephemeral: bool = True) -> RunnerRequest:
    return RunnerRequest(
        name=PREFIX + name,
        pool="p",
        labels=("self-hosted", "linux", "x64"),
        run_untagged=False,
        ephemeral=ephemeral,
    )


def test_satisfies_the_provider_protocol() -> None:
    provider = make()
    assert isinstance(provider, Provider)
    assert (provider.name, provider.kind) == ("gh", "github")


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        (
            "GET",
            "/api/v3/repos/o/r/actions/runs?status=queued",
            "GET /repos/:owner/:repo/actions/runs",
        ),
        (
            "GET",
            "/api/v3/repos/o/r/actions/runs/12/jobs",
            "GET /repos/:owner/:repo/actions/runs/:run_id/jobs",
        ),
        (
            "delete",
            "/api/v3/orgs/acme/actions/runners/7",
            "DELETE /orgs/:org/actions/runners/:runner_id",
        ),
        ("GET", "/api/v3/orgs/acme/repos", "GET /orgs/:org/repos"),
        ("GET", "/api/v3/rate_limit", "GET /rate_limit"),
        (
            "GET",
            "https://api.github.com/repos/o/r/actions/jobs/99",
            "GET /repos/:owner/:repo/actions/jobs/:job_id",
        ),
    ],
)
def test_endpoint_template(method: str, path: str, template: str) -> None:
    assert endpoint_template(method, path, "/api/v3") == template


def _runs(*run_ids: int) -> dict[str, Any]:
    return {"total_count": len(run_ids), "workflow_runs": [{"id": i} for i in run_ids]}


async def test_pending_jobs_reads_queued_jobs_of_queued_and_in_progress_runs(
    mocked: responses.RequestsMock, seen: list[tuple[str, str, int]]
) -> None:
    runs = url("/repos/octo/app/actions/runs")
    mocked.get(
        runs,
        json=_runs(1),
        headers={**rate_headers(), "ETag": '"q"'},
        match=[matchers.query_param_matcher({"status": "queued", "per_page": "100"})],
    )
    mocked.get(
        runs,
        json=_runs(2),
        headers={**rate_headers(), "ETag": '"p"'},
        match=[matchers.query_param_matcher({"status": "in_progress", "per_page": "100"})],
    )
    mocked.get(
        url("/repos/octo/app/actions/runs/1/jobs"),
        json={"total_count": 1, "jobs": [job(10, 1, labels=("linux", "big"))]},
        headers={**rate_headers(), "ETag": '"j1"'},
    )
    page2 = f"{API}/repos/octo/app/actions/runs/2/jobs?filter=latest&per_page=100&page=2"
    mocked.get(
        url("/repos/octo/app/actions/runs/2/jobs"),
        json={"total_count": 3, "jobs": [job(20, 2, "in_progress"), job(21, 2)]},
        headers={**rate_headers(), "ETag": '"j2"', "Link": f'<{page2}>; rel="next"'},
        match=[matchers.query_param_matcher({"filter": "latest", "per_page": "100"})],
    )
    mocked.get(
        url("/repos/octo/app/actions/runs/2/jobs"),
        json={"total_count": 3, "jobs": [job(22, 2)]},
        headers={**rate_headers(), "ETag": '"j2p2"'},
        match=[matchers.query_param_matcher({"filter": "latest", "per_page": "100", "page": "2"})],
    )
    provider = make(seen)
    jobs = await provider.pending_jobs()
    assert sorted(j.id for j in jobs) == ["10", "21", "22"]
    first = next(j for j in jobs if j.id == "10")
    assert (first.scope, first.tags, first.pipeline, first.name) == (
        "octo/app",
        ("linux", "big"),
        "1",
        "job10",
    )
    assert first.created_at.isoformat() == "2026-11-23T10:00:00+00:00"
    assert len(seen) == 5
    assert ("gh", "GET /repos/:owner/:repo/actions/runs/:run_id/jobs", 200) in seen
    assert provider.health().rate_limit_remaining == 4000


async def test_second_poll_is_conditional_and_reuses_the_cached_body(
    mocked: responses.RequestsMock,
) -> None:
    runs = url("/repos/octo/app/actions/runs")
    calls: list[requests.PreparedRequest] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        calls.append(request)
        etag = '"runs-v1"'
        if request.headers.get("If-None-Match") == etag:
            return 304, {**rate_headers(), "ETag": etag}, ""
        return 200, {**rate_headers(), "ETag": etag}, json.dumps(_runs(5))

    mocked.add_callback(responses.GET, runs, callback=answer)
    jobs_calls: list[requests.PreparedRequest] = []

    def answer_jobs(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        jobs_calls.append(request)
        if request.headers.get("If-None-Match") == '"jobs-v1"':
            return 304, rate_headers(), ""
        body = {"total_count": 1, "jobs": [job(50, 5)]}
        return 200, {**rate_headers(), "ETag": '"jobs-v1"'}, json.dumps(body)

    mocked.add_callback(
        responses.GET, url("/repos/octo/app/actions/runs/5/jobs"), callback=answer_jobs
    )
    provider = make()
    first = await provider.pending_jobs()
    second = await provider.pending_jobs()
    assert [j.id for j in first] == [j.id for j in second] == ["50"]
    assert [c.headers.get("If-None-Match") for c in calls] == [None, None, '"runs-v1"', '"runs-v1"']
    # Identical URLs between polls, or the ETag would not apply.
    assert sorted(c.url for c in calls[:2]) == sorted(c.url for c in calls[2:])
    assert [c.headers.get("If-None-Match") for c in jobs_calls] == [None, '"jobs-v1"']


async def test_low_budget_stretches_the_interval_and_answers_from_cache(
    mocked: responses.RequestsMock,
) -> None:
    headers = rate_headers(remaining=120, reset=time.time() + 1800)
    mocked.get(url("/repos/octo/app/actions/runs"), json=_runs(), headers=headers)
    provider = make(low_rate_limit=500)
    assert await provider.pending_jobs() == []
    calls = len(mocked.calls)
    health = provider.health()
    assert health.poll_interval_s is not None
    # 70 spendable requests (120 - 50 reserve) at 2 per poll over 30 min: ~51 s.
    assert 45 < health.poll_interval_s < 55
    assert "stretched" in health.note
    assert await provider.pending_jobs() == []
    assert len(mocked.calls) == calls  # skipped: no request at all


async def test_org_repositories_are_listed_once_per_refresh(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(
        url("/orgs/acme/repos"),
        json=[
            {"full_name": "acme/a"},
            {"full_name": "acme/old", "archived": True},
        ],
        headers=rate_headers(),
    )
    mocked.get(url("/repos/acme/a/actions/runs"), json=_runs(), headers=rate_headers())
    provider = make(repos=(), orgs=("acme",))
    await provider.pending_jobs()
    await provider.pending_jobs()
    listed = [c for c in mocked.calls if "/orgs/acme/repos" in c.request.url]
    polled = [c for c in mocked.calls if "/actions/runs" in c.request.url]
    assert len(listed) == 1
    assert {c.request.url.split("/repos/")[1].split("/actions")[0] for c in polled} == {"acme/a"}


async def test_register_jit_runner(mocked: responses.RequestsMock) -> None:
    mocked.post(
        url("/repos/octo/app/actions/runners/generate-jitconfig"),
        status=201,
        json={
            "runner": runner_json(77, PREFIX + "a", status="offline"),
            "encoded_jit_config": "ZW5j",
        },
        headers=rate_headers(),
        match=[
            matchers.json_params_matcher(
                {
                    "name": PREFIX + "a",
                    "runner_group_id": 3,
                    "labels": ["self-hosted", "linux", "x64"],
                    "work_folder": "_work",
                }
            )
        ],
    )
    reg = await make(runner_group_id=3).register_runner(req())
    assert reg.forge_runner_id == "77"
    assert reg.command == ("/home/runner/run.sh",)
    assert reg.credential == "ZW5j"
    assert reg.credential_env == "ACTIONS_RUNNER_INPUT_JITCONFIG"
    assert "ZW5j" not in repr(reg)


async def test_register_jit_runner_at_org_level(mocked: responses.RequestsMock) -> None:
    mocked.post(
        url("/orgs/acme/actions/runners/generate-jitconfig"),
        status=201,
        json={"runner": runner_json(5, PREFIX + "a"), "encoded_jit_config": "x"},
    )
    reg = await make(orgs=("acme",)).register_runner(req())
    assert reg.forge_runner_id == "5"


async def test_register_reusable_runner(mocked: responses.RequestsMock) -> None:
    mocked.post(
        url("/repos/octo/app/actions/runners/registration-token"),
        status=201,
        json={"token": "AREGTOKEN", "expires_at": "2026-11-23T11:00:00Z"},
    )
    reg = await make(web_url="https://ghes.example").register_runner(req(ephemeral=False))
    assert reg.forge_runner_id == ""
    assert reg.credential == "AREGTOKEN"
    assert reg.credential_env == "ACTIONS_RUNNER_INPUT_TOKEN"
    assert reg.command == (
        "/bin/sh",
        "-c",
        '/home/runner/config.sh --unattended --disableupdate --url "$1" --name "$2" '
        '--labels "$3" --work _work && exec /home/runner/run.sh',
        "sh",
        "https://ghes.example/octo/app",
        PREFIX + "a",
        "self-hosted,linux,x64",
    )


async def test_register_refuses_a_name_without_our_prefix() -> None:
    bad = RunnerRequest(name="x", pool="p", labels=(), run_untagged=True, ephemeral=True)
    with pytest.raises(PermanentProviderError):
        await make().register_runner(bad)


@pytest.mark.parametrize(("status", "error"), [(404, RunnerNotFound), (422, RunnerBusy)])
async def test_unregister_maps_404_and_422(
    mocked: responses.RequestsMock, status: int, error: type[Exception]
) -> None:
    mocked.delete(url("/repos/octo/app/actions/runners/9"), status=status, json={"message": "x"})
    with pytest.raises(error):
        await make().unregister_runner("9")


async def test_unregister_by_id_and_by_name(mocked: responses.RequestsMock) -> None:
    mocked.delete(url("/repos/octo/app/actions/runners/9"), status=204)
    mocked.get(
        url("/repos/octo/app/actions/runners"),
        json={"total_count": 1, "runners": [runner_json(9, PREFIX + "a")]},
        match=[matchers.query_param_matcher({"name": PREFIX + "a", "per_page": "100"})],
    )
    provider = make()
    await provider.unregister_runner("9")
    await provider.unregister_runner(f"name:{PREFIX}a")
    assert sum(1 for c in mocked.calls if c.request.method == "DELETE") == 2


async def test_runner_activity_is_one_listing_for_every_runner(
    mocked: responses.RequestsMock,
) -> None:
    """Issue 11.2: one GET per runner per round spent the budget the job poll needs."""
    mocked.get(
        url("/repos/octo/app/actions/runners"),
        json={
            "total_count": 2,
            "runners": [
                runner_json(1, PREFIX + "a", busy=True),
                runner_json(3, PREFIX + "r", status="offline"),
            ],
        },
    )
    one, two, three = await make().runner_activity(["1", "2", f"name:{PREFIX}r"])
    assert (one.forge_runner_id, one.busy, one.online, one.exists) == ("1", True, True, True)
    assert (two.forge_runner_id, two.exists) == ("2", False)
    assert (three.forge_runner_id, three.busy, three.online) == ("3", False, False)
    assert len(mocked.calls) == 1


async def test_list_own_runners_only_ours(mocked: responses.RequestsMock) -> None:
    mocked.get(
        url("/repos/octo/app/actions/runners"),
        json={
            "total_count": 3,
            "runners": [
                runner_json(1, PREFIX + "a"),
                runner_json(2, runner_name_prefix("other") + "a"),
                runner_json(3, "hand-made"),
            ],
        },
    )
    own = await make().list_own_runners()
    assert [(r.id, r.name, r.labels) for r in own] == [("1", PREFIX + "a", ("self-hosted",))]


@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "retry_after"),
    [
        (401, {}, {"message": "Bad credentials"}, ProviderAuthError, None),
        (403, {"Retry-After": "30"}, {"message": "secondary rate limit"}, RateLimited, 30),
        (429, {"Retry-After": "7"}, {"message": "slow down"}, RateLimited, 7),
        (
            403,
            lambda: rate_headers(remaining=0, reset=time.time() + 600),
            {"message": "API rate limit exceeded"},
            RateLimited,
            600,
        ),
        (500, {}, {"message": "boom"}, TransientProviderError, None),
        (502, {}, {"message": "bad gateway"}, TransientProviderError, None),
    ],
)
async def test_errors_translate_without_retries_or_sleeps(
    mocked: responses.RequestsMock,
    seen: list[tuple[str, str, int]],
    status: int,
    headers: dict[str, str],
    body: dict[str, Any],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    if callable(headers):  # the reset time must be computed when the test runs
        headers = headers()
    mocked.get(url("/repos/octo/app/actions/runs"), status=status, json=body, headers=headers)
    mocked.post(
        url("/repos/octo/app/actions/runners/registration-token"),
        status=status,
        json=body,
        headers=headers,
    )
    provider = make(seen)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await provider.pending_jobs()
    if retry_after is not None:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after == pytest.approx(retry_after, abs=5)
    assert time.monotonic() - started < 2
    polled = len(mocked.calls)
    assert polled <= 2  # queued + in_progress at most: nothing retried
    with pytest.raises(error):
        await provider.register_runner(req(ephemeral=False))
    if error is RateLimited:
        assert len(mocked.calls) == polled  # blocked: not even sent
    assert all(s == status for _, _, s in seen)


async def test_a_missing_repository_is_skipped_not_fatal(mocked: responses.RequestsMock) -> None:
    mocked.get(url("/repos/octo/gone/actions/runs"), status=404, json={"message": "Not Found"})
    mocked.get(url("/repos/octo/app/actions/runs"), json=_runs(), headers=rate_headers())
    provider = make(repos=("octo/gone", "octo/app"))
    assert await provider.pending_jobs() == []
    assert "octo/gone" in provider.health().note
    mocked.post(
        url("/repos/octo/gone/actions/runners/registration-token"),
        status=404,
        json={"message": "Not Found"},
    )
    with pytest.raises(PermanentProviderError):
        await provider.register_runner(req(ephemeral=False))


async def test_errors_carry_the_forges_message(mocked: responses.RequestsMock) -> None:
    mocked.post(
        url("/repos/octo/app/actions/runners/registration-token"),
        status=401,
        json={"message": "Bad credentials"},
    )
    with pytest.raises(ProviderAuthError, match="Bad credentials"):
        await make().register_runner(req(ephemeral=False))


async def test_a_refused_repository_is_skipped_and_only_a_refused_token_pauses(
    mocked: responses.RequestsMock,
) -> None:
    """Issue 11.4: one 403 repo used to pause the whole forge as 'authentication failed'."""
    mocked.get(
        url("/repos/octo/locked/actions/runs"),
        status=403,
        json={"message": "Resource not accessible by personal access token"},
    )
    mocked.get(url("/repos/octo/app/actions/runs"), json=_runs(), headers=rate_headers())
    provider = make(repos=("octo/app", "octo/locked"))
    assert await provider.pending_jobs() == []
    assert "Resource not accessible" in provider.health().scope_errors["octo/locked"]
    # Every repository refused: the token itself is checked, and a refusal pauses.
    mocked.get(url("/rate_limit"), status=401, json={"message": "Bad credentials"})
    alone = make(repos=("octo/locked",))
    with pytest.raises(ProviderAuthError):
        await alone.pending_jobs()


async def test_connection_error_is_transient_and_observed_as_0(
    mocked: responses.RequestsMock, seen: list[tuple[str, str, int]]
) -> None:
    mocked.get(url("/repos/octo/app/actions/runs"), body=requests.ConnectionError("refused"))
    with pytest.raises(TransientProviderError) as caught:
        await make(seen).pending_jobs()
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert seen
    assert {s for _, _, s in seen} == {0}


def _sign(body: bytes, secret: str = "s3cret") -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _delivery(action: str, repo: str = "octo/app", job_id: int = 42) -> bytes:
    return json.dumps(
        {
            "action": action,
            "workflow_job": {**job(job_id, 7), "status": action},
            "repository": {"full_name": repo},
        }
    ).encode()


@pytest.mark.parametrize("action", ["queued"])
async def test_webhook_queued_gives_a_hint_and_a_nudge(action: str) -> None:
    body = _delivery(action)
    headers = {"x-github-event": "workflow_job", "x-hub-signature-256": _sign(body)}
    result = await make().handle_webhook(headers, body)
    assert result.event == f"workflow_job.{action}"
    assert result.nudge
    assert [(j.id, j.scope, j.pipeline) for j in result.jobs] == [("42", "octo/app", "7")]


@pytest.mark.parametrize("action", ["in_progress", "completed"])
async def test_webhook_started_or_finished_jobs(action: str) -> None:
    body = _delivery(action)
    headers = {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _sign(body)}
    result = await make().handle_webhook(headers, body)
    assert (result.nudge, result.finished_job_ids, result.jobs) == (True, ("42",), ())


async def test_webhook_out_of_scope_repository_is_ignored() -> None:
    body = _delivery("queued", repo="someone/else")
    headers = {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _sign(body)}
    result = await make().handle_webhook(headers, body)
    assert (result.nudge, result.jobs) == (False, ())


@pytest.mark.parametrize(
    ("secret", "signature", "body", "status"),
    [
        ("", None, b"{}", 403),
        ("s3cret", None, b"{}", 401),
        ("s3cret", "sha256=" + "0" * 64, b"{}", 401),
        ("s3cret", "sign", b"[1,", 400),
        ("s3cret", "sign", b"[]", 400),
        ("s3cret", "sign", json.dumps({"action": 1, "workflow_job": {}}).encode(), 400),
        (
            "s3cret",
            "sign",
            json.dumps(
                {
                    "action": "queued",
                    "workflow_job": {"id": 1},
                    "repository": {"full_name": "octo/app"},
                }
            ).encode(),
            400,
        ),
    ],
)
async def test_webhook_rejections(
    secret: str, signature: str | None, body: bytes, status: int
) -> None:
    headers = {"X-GitHub-Event": "workflow_job"}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = _sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    with pytest.raises(WebhookRejected) as caught:
        await make(webhook_secret=secret).handle_webhook(headers, body)
    assert caught.value.status == status


async def test_webhook_ping() -> None:
    body = b'{"zen": "hi"}'
    result = await make().handle_webhook(
        {"X-GitHub-Event": "ping", "X-Hub-Signature-256": _sign(body)}, body
    )
    assert (result.event, result.nudge) == ("ping", False)


async def test_a_job_waiting_for_deployment_approval_is_not_demand() -> None:
    """Issue 11.6: such a job cannot run until approved; a runner for it would idle."""
    for action, status in (("waiting", "waiting"), ("queued", "waiting")):
        payload = json.loads(_delivery(action))
        payload["workflow_job"]["status"] = status
        body = json.dumps(payload).encode()
        headers = {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _sign(body)}
        result = await make().handle_webhook(headers, body)
        assert (result.nudge, result.jobs) == (False, ())


async def test_the_provider_keeps_no_webhook_hints(mocked: responses.RequestsMock) -> None:
    """Hints belong to the orchestrator's forge tracker; pending_jobs is the poll's truth."""
    headers = rate_headers(remaining=100, reset=time.time() + 3600)
    mocked.get(url("/repos/octo/app/actions/runs"), json=_runs(7), headers=headers)
    mocked.get(
        url("/repos/octo/app/actions/runs/7/jobs"),
        json={"total_count": 1, "jobs": [job(42, 7)]},
        headers=headers,
    )
    provider = make(low_rate_limit=500)
    assert [j.id for j in await provider.pending_jobs()] == ["42"]
    for body in (_delivery("completed"), _delivery("queued", job_id=43)):
        await provider.handle_webhook(
            {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _sign(body)}, body
        )
    calls = len(mocked.calls)
    assert [j.id for j in await provider.pending_jobs()] == ["42"]  # stretched: last poll
    assert len(mocked.calls) == calls


async def test_a_cancelled_call_does_not_starve_the_client_pool(
    mocked: responses.RequestsMock,
) -> None:
    gate = threading.Event()

    def slow(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        gate.wait(5)
        return 200, rate_headers(), json.dumps(_runs())

    mocked.add_callback(responses.GET, url("/repos/octo/app/actions/runs"), callback=slow)
    options = GitHubOptions(
        name="gh", token="t", instance_id="u1", api_url=API, repos=("octo/app",)
    )
    provider = GitHubProvider(options, max_concurrency=1)
    task = asyncio.create_task(provider.pending_jobs())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()  # the orphaned thread finishes and hands its client back
    assert await provider.pending_jobs() == []
    await provider.aclose()
    with pytest.raises(PermanentProviderError):
        await provider.pending_jobs()


async def test_a_deeply_nested_delivery_is_a_400_not_a_crash() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    headers = {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": _sign(body)}
    with pytest.raises(WebhookRejected) as caught:
        await make().handle_webhook(headers, body)
    assert caught.value.status == 400
