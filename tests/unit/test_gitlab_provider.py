"""Unit tests of providers.gitlab: every call it makes, mocked with ``responses``.

FORGE-API §4 gotchas covered: ``scope[]`` encoding, python-gitlab's own 429 sleep
(must not happen: one call, no sleep), no retries of 5xx, Link pagination, ``tag_list``
as a JSON list, ``gl.user`` not needed for ``POST /user/runners``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from providers.base import GitLabOptions, RunnerRequest, runner_name_prefix
from providers.budget import Budget, Priority
from providers.errors import (
    AccessDenied,
    PermanentProviderError,
    ProviderAuthError,
    RateLimited,
    RunnerBusy,
    RunnerNotFound,
    TransientProviderError,
    WebhookRejected,
)
from providers.gitlab import GitLabProvider, endpoint_template
from providers.wire import parse_time, retry_after

URL = "http://gl.test"
API = f"{URL}/api/v4"
PREFIX = runner_name_prefix("u1")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def seen() -> list[tuple[str, str, int]]:
    return []


def provider(seen: list[tuple[str, str, int]] | None = None, **overrides: Any) -> GitLabProvider:
    fields: dict[str, Any] = {
        "name": "gl",
        "url": URL,
        "token": "tok",
        "instance_id": "u1",
        "projects": ("1",),
        "webhook_secret": "s3cret",
    }
    fields.update(overrides)
    clock = fields.pop("clock", None)
    kwargs: dict[str, Any] = {}
    if seen is not None:
        kwargs["observer"] = lambda *a: seen.append(a)
    if clock is not None:
        kwargs["clock"] = clock
    return GitLabProvider(GitLabOptions(**fields), **kwargs)


def job(jid: int, status: str = "pending", tags: tuple[str, ...] = ("docker",)) -> dict[str, Any]:
    return {
        "id": jid,
        "status": status,
        "name": f"j{jid}",
        "tag_list": list(tags),
        "created_at": "2026-11-23T09:00:00.000Z",
        "pipeline": {"id": 77},
    }


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def request(**kw: Any) -> RunnerRequest:
    fields: dict[str, Any] = {
        "name": f"{PREFIX}p-1",
        "pool": "p",
        "labels": ("a", "b"),
        "run_untagged": True,
        "ephemeral": False,
    }
    fields.update(kw)
    return RunnerRequest(**fields)


# -- pending jobs ----------------------------------------------------------------------


async def test_pending_jobs_sends_scope_array_and_follows_link(
    rsps: responses.RequestsMock, seen: list[tuple[str, str, int]]
) -> None:
    page2 = f"{API}/projects/grp%2Fapp/jobs?page=2&per_page=100&scope%5B%5D=pending"
    rsps.get(
        f"{API}/projects/grp%2Fapp/jobs",
        json=[job(3), job(2, "running")],
        headers={"Link": f'<{page2}>; rel="next"'},
    )
    rsps.get(f"{API}/projects/grp%2Fapp/jobs", json=[job(1, tags=())])
    p = provider(seen, projects=("grp/app",))
    jobs = await p.pending_jobs()
    assert [(j.id, j.tags, j.scope, j.pipeline) for j in jobs] == [
        ("3", ("docker",), "grp/app", "77"),
        ("1", (), "grp/app", "77"),
    ]
    assert jobs[0].created_at == datetime(2026, 11, 23, 9, tzinfo=UTC)
    first = rsps.calls[0].request.url
    assert "scope%5B%5D=pending" in first
    assert query(rsps.calls[0])["per_page"] == ["100"]
    assert "/projects/grp%2Fapp/jobs" in first
    assert seen == [("gl", "GET /projects/:id/jobs", 200)] * 2


async def test_include_created_asks_for_both_statuses(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/1/jobs", json=[job(1, "created"), job(2)])
    jobs = await provider(include_created=True).pending_jobs()
    assert {j.id for j in jobs} == {"1", "2"}
    assert query(rsps.calls[0])["scope[]"] == ["pending", "created"]


async def test_groups_are_expanded_with_subgroups_and_cached(
    rsps: responses.RequestsMock,
) -> None:
    rsps.get(
        f"{API}/groups/team%2Fsub/projects",
        json=[
            {"id": 5, "path_with_namespace": "team/sub/a"},
            {"id": 6, "path_with_namespace": "team/sub/deeper/b"},
        ],
    )
    rsps.get(f"{API}/projects/5/jobs", json=[job(10)])
    rsps.get(f"{API}/projects/6/jobs", json=[])
    clock = Clock()
    p = provider(projects=(), groups=("team/sub",), clock=clock)
    assert [(j.id, j.scope) for j in await p.pending_jobs()] == [("10", "team/sub/a")]
    assert query(rsps.calls[0])["include_subgroups"] == ["true"]
    clock.now += 100  # within group_refresh_s: no new expansion
    rsps.get(f"{API}/projects/5/jobs", json=[])
    rsps.get(f"{API}/projects/6/jobs", json=[])
    assert await p.pending_jobs() == []
    assert sum("/groups/" in c.request.url for c in rsps.calls) == 1


async def test_budget_limits_a_poll_and_keeps_last_results(rsps: responses.RequestsMock) -> None:
    clock = Clock()
    for pid in range(1, 4):
        rsps.get(f"{API}/projects/{pid}/jobs", json=[job(pid)])
    # 12/min -> burst of 2, refill 10/min: a poll covers 2 of the 3 projects
    p = provider(projects=("1", "2", "3"), requests_per_minute=12, clock=clock)
    assert {j.id for j in await p.pending_jobs()} == {"1", "2"}
    assert "budget" in p.health().note
    assert p.health().poll_interval_s == pytest.approx(3 / (10 / 60))
    clock.now += 6  # one more token
    assert {j.id for j in await p.pending_jobs()} == {"1", "2", "3"}  # 1 and 2 remembered
    assert len(rsps.calls) == 3


async def test_graphql_for_instance_scope(rsps: responses.RequestsMock) -> None:
    node = {
        "id": "gid://gitlab/Ci::Build/42",
        "name": "build",
        "status": "PENDING",
        "tags": ["gpu"],
        "createdAt": "2026-11-23T09:00:00Z",
        "project": {"id": "gid://gitlab/Project/3", "fullPath": "g/p"},
        "pipeline": {"id": "gid://gitlab/Ci::Pipeline/9"},
    }
    rsps.post(
        f"{URL}/api/graphql",
        json={
            "data": {
                "jobs": {"pageInfo": {"hasNextPage": True, "endCursor": "c1"}, "nodes": [node]}
            }
        },
    )
    rsps.post(
        f"{URL}/api/graphql",
        json={
            "data": {"jobs": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}}
        },
    )
    jobs = await provider(projects=(), instance=True).pending_jobs()
    assert [(j.id, j.scope, j.tags, j.pipeline) for j in jobs] == [("42", "g/p", ("gpu",), "9")]
    first, second = (json.loads(c.request.body) for c in rsps.calls)
    assert first["variables"] == {"statuses": ["PENDING"], "after": None}
    assert second["variables"]["after"] == "c1"


async def test_graphql_empty_or_refused_falls_back_to_projects(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(f"{URL}/api/graphql", json={"data": {"jobs": {"nodes": [], "pageInfo": {}}}})
    rsps.post(f"{URL}/api/graphql", json={"errors": [{"message": "nope"}]})
    rsps.get(f"{API}/projects/1/jobs", json=[job(1)])
    rsps.get(f"{API}/projects/1/jobs", json=[job(1)])
    p = provider(instance=True)
    assert [j.id for j in await p.pending_jobs()] == ["1"]
    assert [j.id for j in await p.pending_jobs()] == ["1"]


async def test_one_missing_project_does_not_hide_the_others(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/1/jobs", status=404, json={"message": "404 Project Not Found"})
    rsps.get(f"{API}/projects/2/jobs", json=[job(9)])
    p = provider(projects=("1", "2"))
    assert [j.id for j in await p.pending_jobs()] == ["9"]
    assert "404" in p.health().scope_errors["1"]


# -- errors ----------------------------------------------------------------------------


async def test_429_is_not_slept_on_and_blocks_further_calls(
    rsps: responses.RequestsMock, seen: list[tuple[str, str, int]]
) -> None:
    rsps.get(
        f"{API}/projects/1/jobs",
        status=429,
        json={"message": "slow down"},
        headers={"Retry-After": "100", "RateLimit-Remaining": "0", "RateLimit-Limit": "600"},
    )
    clock = Clock()
    p = provider(seen, clock=clock)
    started = time.monotonic()
    with pytest.raises(RateLimited) as info:
        await p.pending_jobs()
    assert time.monotonic() - started < 1
    assert info.value.retry_after == 100
    assert len(rsps.calls) == 1
    with pytest.raises(RateLimited):
        await p.list_own_runners()  # refused locally, no request
    assert len(rsps.calls) == 1
    health = p.health()
    assert (health.rate_limit_remaining, health.rate_limit_limit) == (0, 600)
    assert seen == [("gl", "GET /projects/:id/jobs", 429)]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient_and_not_retried(rsps: responses.RequestsMock, status: int) -> None:
    rsps.get(f"{API}/runners", status=status, body="oops")
    with pytest.raises(TransientProviderError) as info:
        await provider().list_own_runners()
    assert not isinstance(info.value, RateLimited)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ProviderAuthError),
        (403, AccessDenied),  # a missing right, not a bad token: never pauses the forge
        (404, PermanentProviderError),
        (400, PermanentProviderError),
    ],
)
async def test_status_translation(
    rsps: responses.RequestsMock, status: int, error: type[Exception]
) -> None:
    rsps.post(f"{API}/user/runners", status=status, json={"message": "no"})
    with pytest.raises(error) as info:
        await provider(runner_project_id=1).register_runner(request())
    assert "no" in str(info.value)


async def test_connection_error_is_observed_with_status_0(
    rsps: responses.RequestsMock, seen: list[tuple[str, str, int]]
) -> None:
    rsps.get(f"{API}/runners", body=requests.ConnectionError("refused"))
    with pytest.raises(TransientProviderError):
        await provider(seen).list_own_runners()
    assert seen == [("gl", "GET /runners", 0)]


async def test_timeout_and_garbage_are_transient(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/runners", body=requests.Timeout("slow"))
    rsps.get(f"{API}/runners", body="<html>proxy</html>", content_type="application/json")
    p = provider()
    with pytest.raises(TransientProviderError):
        await p.list_own_runners()
    with pytest.raises(TransientProviderError):
        await p.list_own_runners()


# -- runners ---------------------------------------------------------------------------


async def test_register_project_runner(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/grp%2Fapp", json={"id": 31})
    rsps.post(
        f"{API}/user/runners",
        status=201,
        json={"id": 9, "token": "glrt-abc", "token_expires_at": None},
    )
    p = provider(projects=("grp/app",))
    reg = await p.register_runner(
        request(executor="docker", executor_args=("--docker-image", "alpine:3"))
    )
    body = json.loads(rsps.calls[1].request.body)
    assert body == {
        "runner_type": "project_type",
        "project_id": 31,
        "description": f"{PREFIX}p-1",
        "tag_list": ["a", "b"],
        "run_untagged": True,
    }
    assert reg.forge_runner_id == "9"
    assert reg.credential == "glrt-abc"
    assert reg.credential_env == "CI_SERVER_TOKEN"
    assert reg.command == (
        "gitlab-runner",
        "run-single",
        "--url",
        URL,
        "--executor",
        "docker",
        "--max-builds",
        "0",
        "--wait-timeout",
        "300",
        "--docker-image",
        "alpine:3",
    )
    assert "glrt-abc" not in repr(reg)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"projects": (), "groups": ("7",)}, {"runner_type": "group_type", "group_id": 7}),
        ({"runner_group_id": 4}, {"runner_type": "group_type", "group_id": 4}),
        ({"runner_project_id": 2}, {"runner_type": "project_type", "project_id": 2}),
        ({"instance": True}, {"runner_type": "instance_type"}),
        ({"runner_type": "instance_type"}, {"runner_type": "instance_type"}),
        ({"projects": ("12",)}, {"runner_type": "project_type", "project_id": 12}),
    ],
)
async def test_runner_type_fits_the_scope(
    rsps: responses.RequestsMock, overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    rsps.post(f"{API}/user/runners", status=201, json={"id": 1, "token": "glrt-x"})
    reg = await provider(**overrides).register_runner(request(ephemeral=True))
    body = json.loads(rsps.calls[0].request.body)
    assert {k: body[k] for k in expected} == expected
    assert reg.command[reg.command.index("--max-builds") + 1] == "1"


async def test_register_without_any_scope_is_permanent() -> None:
    with pytest.raises(PermanentProviderError):
        await provider(projects=()).register_runner(request())


async def test_unregister_checks_ownership_pauses_checks_then_deletes(
    rsps: responses.RequestsMock,
) -> None:
    rsps.get(f"{API}/runners/9", json={"id": 9, "description": f"{PREFIX}p-1"})
    rsps.put(f"{API}/runners/9", json={"id": 9, "paused": True})
    rsps.get(f"{API}/runners/9/jobs", json=[{"id": 3, "status": "success"}])
    rsps.delete(f"{API}/runners/9", status=204)
    await provider().unregister_runner("9")
    assert [c.request.method for c in rsps.calls] == ["GET", "PUT", "GET", "DELETE"]
    assert json.loads(rsps.calls[1].request.body) == {"paused": True}


async def test_forced_unregister_deletes_without_pausing(rsps: responses.RequestsMock) -> None:
    """Its container is going away anyway (exited, or a drain deadline passed)."""
    rsps.get(f"{API}/runners/9", json={"id": 9, "description": f"{PREFIX}p-1"})
    rsps.delete(f"{API}/runners/9", status=204)
    await provider().unregister_runner("9", force=True)
    assert [c.request.method for c in rsps.calls] == ["GET", "DELETE"]


async def test_unregister_keeps_a_runner_that_took_a_job(rsps: responses.RequestsMock) -> None:
    """Paused first, so no job can arrive after the check; a running job means keep it."""
    rsps.get(f"{API}/runners/9", json={"id": 9, "description": f"{PREFIX}p-1"})
    rsps.put(f"{API}/runners/9", json={"id": 9})
    rsps.get(f"{API}/runners/9/jobs", json=[{"id": 4, "status": "running"}])
    with pytest.raises(RunnerBusy):
        await provider().unregister_runner("9")
    methods = [c.request.method for c in rsps.calls]
    assert methods == ["GET", "PUT", "GET", "PUT"] and "DELETE" not in methods
    assert json.loads(rsps.calls[3].request.body) == {"paused": False}


async def test_unregister_refuses_foreign_runner(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/runners/9", json={"id": 9, "description": "ro-other-p-1"})
    with pytest.raises(PermanentProviderError):
        await provider().unregister_runner("9")
    assert len(rsps.calls) == 1


async def test_unregister_missing_runner(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/runners/9", status=404, json={"message": "404 Runner Not Found"})
    with pytest.raises(RunnerNotFound):
        await provider().unregister_runner("9")


async def test_list_own_runners_filters_by_prefix_across_pages(
    rsps: responses.RequestsMock,
) -> None:
    nxt = f"{API}/runners?page=2&per_page=100"
    rsps.get(
        f"{API}/runners",
        headers={"Link": f'<{nxt}>; rel="next"'},
        json=[
            {
                "id": 1,
                "description": f"{PREFIX}a",
                "online": True,
                "job_execution_status": "active",
            },
            {"id": 2, "description": "someone else"},
        ],
    )
    rsps.get(
        f"{API}/runners",
        json=[
            {"id": 3, "description": f"x{PREFIX}"},
            {"id": 4, "description": f"{PREFIX}b", "online": False, "job_execution_status": "idle"},
        ],
    )
    own = await provider().list_own_runners()
    assert [(r.id, r.online, r.busy) for r in own] == [("1", True, True), ("4", False, False)]


async def test_admin_lists_all_runners(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/runners/all", json=[])
    assert await provider(instance=True).list_own_runners() == []


async def test_runner_activity_is_one_listing_plus_a_look_at_runners_that_changed(
    rsps: responses.RequestsMock,
) -> None:
    """Issue 11.2: one request per runner per round starved the job poll."""

    def listing(*busy: int) -> list[dict[str, Any]]:
        return [
            {
                "id": i,
                "description": f"{PREFIX}{i}",
                "job_execution_status": "active" if i in busy else "idle",
            }
            for i in (1, 2)
        ]

    rsps.get(f"{API}/runners", json=listing(1))
    rsps.get(
        f"{API}/runners/1/jobs",
        json=[{"id": 50, "status": "running"}, {"id": 49, "status": "success"}],
    )
    rsps.get(
        f"{API}/runners/2/jobs",
        json=[
            {"id": 41, "status": "success", "finished_at": "2026-11-23T09:05:00.000Z"},
            {"id": 40, "status": "failed", "finished_at": "2026-11-23T09:01:00.000Z"},
        ],
    )
    rsps.get(f"{API}/runners/3/jobs", status=404, json={"message": "404 Runner Not Found"})
    p = provider()
    busy, idle, gone = await p.runner_activity(["1", "2", "3"])
    assert (busy.busy, busy.current_job) == (True, "50")
    assert idle.busy is False
    assert idle.last_job_ended_at == datetime(2026, 11, 23, 9, 5, tzinfo=UTC)
    assert gone.exists is False
    assert len(rsps.calls) == 4
    assert all(query(c)["sort"] == ["desc"] for c in rsps.calls[1:])
    # Next round nothing changed: one listing, no per-runner request.
    rsps.get(f"{API}/runners", json=listing(1))
    again = await p.runner_activity(["1", "2"])
    assert [(a.busy, a.current_job) for a in again] == [(True, "50"), (False, "")]
    assert len(rsps.calls) == 5
    # Runner 1 finished its job: only it is looked at.
    rsps.get(f"{API}/runners", json=listing())
    rsps.get(
        f"{API}/runners/1/jobs",
        json=[{"id": 50, "status": "success", "finished_at": "2026-11-23T09:09:00.000Z"}],
    )
    done, _ = await p.runner_activity(["1", "2"])
    assert (done.busy, done.last_job_ended_at) == (False, datetime(2026, 11, 23, 9, 9, tzinfo=UTC))
    assert len(rsps.calls) == 7


# -- webhooks --------------------------------------------------------------------------

HOOK = {"X-Gitlab-Token": "s3cret", "X-Gitlab-Event": "Job Hook"}


def hook(**fields: Any) -> bytes:
    return json.dumps(
        {
            "object_kind": "build",
            "build_id": 5,
            "project_id": 1,
            "build_status": "pending",
            **fields,
        }
    ).encode()


async def test_pending_hook_fetches_the_tags(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/1/jobs/5", json=job(5, tags=("gpu", "arm64")))
    result = await provider().handle_webhook(HOOK, hook(project={"path_with_namespace": "g/p"}))
    assert result.nudge
    assert [(j.id, j.tags, j.scope) for j in result.jobs] == [("5", ("gpu", "arm64"), "g/p")]


async def test_finished_hook_needs_no_request() -> None:
    result = await provider().handle_webhook(HOOK, hook(build_status="success"))
    assert (result.nudge, result.finished_job_ids, result.jobs) == (True, ("5",), ())


async def test_created_hook_only_counts_with_include_created(rsps: responses.RequestsMock) -> None:
    assert not (await provider().handle_webhook(HOOK, hook(build_status="created"))).nudge
    rsps.get(f"{API}/projects/1/jobs/5", json=job(5, "created"))
    result = await provider(include_created=True).handle_webhook(HOOK, hook(build_status="created"))
    assert [j.id for j in result.jobs] == ["5"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({**HOOK, "X-Gitlab-Token": "wrong"}, hook(), 401),
        ({"X-Gitlab-Event": "Job Hook"}, hook(), 401),
        (HOOK, b"\xff\xfe", 400),
        (HOOK, b"null", 400),
        (HOOK, hook(build_id=True), 400),
        (HOOK, hook(build_id=None), 400),
        (HOOK, hook(project_id=1.5), 400),
        (HOOK, hook(build_status=["pending"]), 400),
        (HOOK, hook(object_kind="pipeline"), 400),
    ],
)
async def test_bad_hooks_are_rejected(headers: dict[str, str], body: bytes, status: int) -> None:
    with pytest.raises(WebhookRejected) as info:
        await provider().handle_webhook(headers, body)
    assert info.value.status == status


async def test_hook_without_secret_configured_is_refused() -> None:
    with pytest.raises(WebhookRejected) as info:
        await provider(webhook_secret="").handle_webhook(HOOK, hook())
    assert info.value.status == 404


async def test_other_events_are_accepted_without_nudge() -> None:
    result = await provider().handle_webhook({**HOOK, "X-Gitlab-Event": "Pipeline Hook"}, b"{}")
    assert (result.event, result.nudge) == ("Pipeline Hook", False)


# -- helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "template"),
    [
        ("GET", f"{API}/projects/a%2Fb/jobs?scope%5B%5D=pending", "GET /projects/:id/jobs"),
        ("GET", f"{API}/projects/3/jobs/9", "GET /projects/:id/jobs/:job_id"),
        ("get", f"{API}/groups/7/projects?page=2", "GET /groups/:id/projects"),
        ("DELETE", f"{API}/runners/12", "DELETE /runners/:id"),
        ("GET", f"{API}/runners/all", "GET /runners/all"),
        ("GET", f"{API}/runners/12/jobs", "GET /runners/:id/jobs"),
        ("POST", f"{API}/user/runners", "POST /user/runners"),
        ("POST", f"{URL}/api/graphql", "POST /graphql"),
    ],
)
def test_endpoint_template(method: str, url: str, template: str) -> None:
    assert endpoint_template(method, url) == template


def test_budget_never_exceeds_the_minute() -> None:
    clock = Clock()
    budget = Budget(60, clock)
    sent: list[float] = []
    for _ in range(300):  # try every 0.5 s for 150 s
        while budget.available():
            budget.charge(Priority.JOB_POLL)
            sent.append(clock.now)
        clock.now += 0.5
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 60
    assert len(sent) >= 130  # and it does use it: 10 burst + 50/min after


def test_retry_after_sources() -> None:
    now = time.time()
    assert retry_after({"Retry-After": "3"}, now) == 3
    assert retry_after({}, now) is None
    assert retry_after({"Retry-After": "soon"}, now) is None
    assert retry_after({"Retry-After": "1e999"}, now) is None  # not finite: unusable


def test_parse_time() -> None:
    assert parse_time("2026-11-23T09:00:00.123Z") == datetime(
        2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC
    )
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


async def test_429_without_retry_after_uses_ratelimit_reset(rsps: responses.RequestsMock) -> None:
    reset = str(int(time.time()) + 40)
    rsps.get(f"{API}/runners", status=429, json={}, headers={"RateLimit-Reset": reset})
    with pytest.raises(RateLimited) as info:
        await provider().list_own_runners()
    assert 38 <= (info.value.retry_after or 0) <= 40


async def test_retry_after_zero_blocks_only_for_the_minimum_wait(
    rsps: responses.RequestsMock,
) -> None:
    rsps.get(f"{API}/runners", status=429, json={}, headers={"Retry-After": "0"})
    rsps.get(f"{API}/runners", json=[])
    clock = Clock()
    p = provider(clock=clock)
    with pytest.raises(RateLimited) as info:
        await p.list_own_runners()
    assert info.value.retry_after == 1.0  # clamped up to min_retry_wait_s
    clock.now += 1.0
    assert await p.list_own_runners() == []


async def test_spent_budget_header_blocks_until_reset(rsps: responses.RequestsMock) -> None:
    reset = str(int(time.time()) + 30)
    rsps.get(
        f"{API}/runners", json=[], headers={"RateLimit-Remaining": "0", "RateLimit-Reset": reset}
    )
    p = provider()
    assert await p.list_own_runners() == []
    with pytest.raises(RateLimited):  # GitLab said the budget is spent: do not ask again yet
        await p.list_own_runners()
    assert len(rsps.calls) == 1


async def test_aclose_closes_the_session(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/runners", json=[])
    p = provider()
    await p.list_own_runners()
    await p.aclose()
    assert p.health().requests_total == 1


async def test_project_that_disappears_drops_its_jobs(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/1/jobs", json=[job(1)])
    rsps.get(f"{API}/projects/1/jobs", status=404, json={"message": "404 Project Not Found"})
    rsps.get(f"{API}/user", json={"id": 1, "username": "bot"})  # every project refused: token?
    p = provider()
    assert [j.id for j in await p.pending_jobs()] == ["1"]
    assert await p.pending_jobs() == []


async def test_graphql_is_budgeted_too(rsps: responses.RequestsMock) -> None:
    node = {"id": "gid://gitlab/Ci::Build/1", "tags": [], "project": {"fullPath": "g/p"}}
    rsps.post(f"{URL}/api/graphql", json={"data": {"jobs": {"nodes": [node]}}})
    p = provider(projects=(), instance=True, requests_per_minute=6, clock=Clock())
    first = await p.pending_jobs()  # the one-request burst of a 6/min budget
    assert await p.pending_jobs() == first  # no token left: the last answer, no request
    assert len(rsps.calls) == 1


async def test_a_deeply_nested_hook_body_is_a_400_not_a_crash() -> None:
    """Issue 12.1: 100k-deep JSON raised RecursionError (a 500) with a valid secret."""
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(WebhookRejected) as caught:
        await provider().handle_webhook(HOOK, body)
    assert caught.value.status == 400


async def test_a_hook_for_a_project_outside_the_scopes_is_not_demand() -> None:
    """Issue 11.6: GitHub checked the scope of a delivery, GitLab did not."""
    p = provider(projects=("1", "grp/app"), groups=("team",))
    for body in (
        hook(project_id=99, project={"path_with_namespace": "other/thing"}),
        hook(project_id=98, project={"path_with_namespace": "teammate/app"}),  # not team/
    ):
        result = await p.handle_webhook(HOOK, body)
        assert (result.nudge, result.jobs, result.finished_job_ids) == (False, (), ())


async def test_hooks_for_configured_projects_and_group_members_are_demand(
    rsps: responses.RequestsMock,
) -> None:
    rsps.get(f"{API}/projects/7/jobs/5", json=job(5))
    rsps.get(f"{API}/projects/1/jobs/5", json=job(5))
    p = provider(projects=("1",), groups=("team",))
    by_group = await p.handle_webhook(
        HOOK, hook(project_id=7, project={"path_with_namespace": "team/sub/app"})
    )
    by_id = await p.handle_webhook(HOOK, hook())
    assert by_group.jobs and by_id.jobs
