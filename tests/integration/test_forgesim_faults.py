"""The forge simulators' faults do what the catalogue (tests/forgesim/README.md) says.

Generic faults (bounds, slow, trickle, redirect, absurd Retry-After, the old global
form), GitLab's shapes (one project refused, the two 429s, the real ``jobs_index``
limiter, GraphQL refused, huge pages) and the request stats. GitHub's shapes are in
``test_forgesim_github_faults.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.forgesim import faults as fault_book
from tests.forgesim.common import RunningSim
from tests.forgesim.gitlab import GitLabSim, create_app

TOKEN = "glpat-faults"
AUTH = {"PRIVATE-TOKEN": TOKEN}


class Client:
    def __init__(self, running: RunningSim, http: aiohttp.ClientSession) -> None:
        self.url = running.url
        self.http = http
        self.sim: GitLabSim = next(v for v in running.app.values() if isinstance(v, GitLabSim))

    async def ctl(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.http.request(method, self.url + path, json=body) as resp:
            assert resp.status == expect, await resp.text()
            return await resp.json()

    async def fault(self, **body: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.ctl("POST", "/_sim/faults", body)
        return answer

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        kw.setdefault("headers", AUTH)
        async with self.http.get(self.url + path, **kw) as resp:
            text = await resp.text()
            body = await resp.json() if resp.content_type == "application/json" else text
            return resp.status, body, dict(resp.headers)


@pytest.fixture
async def gl() -> AsyncIterator[Client]:
    async with RunningSim(create_app(TOKEN)) as running, aiohttp.ClientSession() as http:
        client = Client(running, http)
        for pid in (1, 2):
            await client.ctl("POST", f"/_sim/projects/{pid}/jobs", {"tags": ["t"]})
        yield client


# -- bounds and the generic faults -----------------------------------------------------


async def test_a_fault_with_a_count_answers_that_many_requests_then_stops(gl: Client) -> None:
    await gl.fault(kind="status", status=503, count=2, seconds=60)
    statuses = [(await gl.get("/api/v4/projects/1/jobs"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (await gl.ctl("GET", "/_sim/faults"))["faults"] == []


async def test_every_fault_is_bounded(gl: Client) -> None:
    for bad in ({"seconds": 0}, {"seconds": -1}, {"count": 0}, {"kind": "nope"}):
        await gl.ctl("POST", "/_sim/faults", {"kind": "status", "status": 500, **bad}, 400)
    rule = gl.sim.faults.add("slow", seconds=10**9, delay=10**9)
    assert rule.remaining_seconds() <= fault_book.MAX_SECONDS
    gl.sim.faults.clear()


async def test_the_old_global_form_still_replaces_and_clears(gl: Client) -> None:
    await gl.ctl("POST", "/_sim/faults", {"status": 500, "seconds": 30})
    await gl.ctl("POST", "/_sim/faults", {"status": 502, "seconds": 30, "retry_after": 7})
    status, _, headers = await gl.get("/api/v4/user")
    assert (status, headers["Retry-After"]) == (502, "7")
    await gl.ctl("POST", "/_sim/faults", {"status": 0, "seconds": 0})
    assert (await gl.get("/api/v4/user"))[0] == 200


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (86400, "86400"),
        ("1e15", "1e15"),
        (1e15, "1000000000000000.0"),
        (-5, "-5"),
        ("soon", "soon"),
    ],
)
async def test_absurd_retry_after_values_are_sent_verbatim(
    gl: Client, given: Any, sent: str
) -> None:
    await gl.fault(kind="rate_limit", retry_after=given, count=1)
    status, _, headers = await gl.get("/api/v4/projects/1/jobs")
    assert (status, headers.get("Retry-After")) == (429, sent)


async def test_slow_answers_outlast_a_short_client_deadline(gl: Client) -> None:
    await gl.fault(kind="slow", delay=5, count=1, seconds=10)
    with pytest.raises(TimeoutError):
        await gl.get("/api/v4/user", timeout=aiohttp.ClientTimeout(total=0.2))
    assert (await gl.get("/api/v4/user"))[0] == 200  # the count is spent


async def test_trickle_sends_headers_then_the_body_byte_by_byte(gl: Client) -> None:
    await gl.fault(kind="trickle", interval=5, count=1, seconds=30)
    async with gl.http.get(f"{gl.url}/api/v4/projects/1/jobs", headers=AUTH) as resp:
        assert resp.status == 200  # headers arrive at once: only a body deadline helps
        assert int(resp.headers["Content-Length"]) > 1
        assert await resp.content.read(1) == b"["
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await resp.read()
    gl.sim.faults.clear()  # ends the trickle (the server finishes the body at once)


async def test_a_trickle_ends_with_its_deadline(gl: Client) -> None:
    _, normal, _ = await gl.get("/api/v4/projects/1/jobs")
    await gl.fault(kind="trickle", interval=0.05, bytes=3, seconds=1)
    status, body, _ = await gl.get("/api/v4/projects/1/jobs")
    assert (status, body[0]["id"]) == (200, normal[0]["id"])


async def test_redirect_points_at_another_loopback_port_that_records_credentials(
    gl: Client,
) -> None:
    await gl.fault(kind="redirect", match="/jobs$", count=2)
    async with gl.http.get(
        f"{gl.url}/api/v4/projects/1/jobs", headers=AUTH, allow_redirects=False
    ) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith("http://127.0.0.1:")
    assert not location.startswith(gl.url)
    # A client that follows (aiohttp keeps custom headers such as PRIVATE-TOKEN):
    async with gl.http.get(f"{gl.url}/api/v4/projects/1/jobs", headers=AUTH) as resp:
        assert resp.status == 200
        assert str(resp.url).startswith(location.rsplit("/api/", 1)[0])
    trap = (await gl.ctl("GET", "/_sim/stats"))["trap"]
    assert [h["credentials"] for h in trap["hits"]] == [["private-token"]]


# -- GitLab shapes -----------------------------------------------------------------------


async def test_one_project_refused_while_the_others_answer(gl: Client) -> None:
    await gl.fault(kind="forbidden", project=1, seconds=60)
    status, body, _ = await gl.get("/api/v4/projects/1/jobs")
    assert (status, body) == (403, {"message": "403 Forbidden"})
    assert (await gl.get("/api/v4/projects/sim%2Fproject-1/jobs"))[0] == 403
    status, body, _ = await gl.get("/api/v4/projects/2/jobs")
    assert status == 200
    assert len(body) == 1


async def test_jobs_limiter_429_has_no_rate_limit_headers(gl: Client) -> None:
    await gl.fault(kind="rate_limit", count=1)
    status, body, headers = await gl.get("/api/v4/projects/1/jobs")
    assert status == 429
    assert body == {
        "message": {"error": "This endpoint has been requested too many times. Try again later."}
    }
    assert not [h for h in headers if h.lower().startswith(("ratelimit", "retry-after"))]


async def test_rack_attack_429_is_plain_text_with_every_header(gl: Client) -> None:
    await gl.fault(kind="rate_limit", shape="rack_attack", retry_after=30, count=1)
    status, body, headers = await gl.get("/api/v4/user")
    assert (status, body) == (429, "Retry later\n")
    assert headers["Retry-After"] == "30"
    assert headers["RateLimit-Remaining"] == "0"
    assert {"RateLimit-Name", "RateLimit-Limit", "RateLimit-Reset", "RateLimit-ResetTime"} <= set(
        headers
    )


async def test_the_real_jobs_limiter_sends_no_headers_on_200s(gl: Client) -> None:
    await gl.fault(kind="gitlab_limiter", per_minute=2, retry_after=True)
    first = await gl.get("/api/v4/projects/1/jobs")
    second = await gl.get("/api/v4/projects/2/jobs")
    third = await gl.get("/api/v4/projects/1/jobs")
    assert [first[0], second[0], third[0]] == [200, 200, 429]
    for _, _, headers in (first, second, third):
        assert not [h for h in headers if h.lower().startswith("ratelimit")]
    assert 0 < int(third[2]["Retry-After"]) <= 61


async def test_refused_job_lists_still_count_against_the_limiter(gl: Client) -> None:
    await gl.fault(kind="forbidden", project=1)
    await gl.fault(kind="gitlab_limiter", per_minute=2)
    statuses = [(await gl.get(f"/api/v4/projects/{p}/jobs"))[0] for p in (1, 1, 2)]
    assert statuses == [403, 403, 429]


@pytest.mark.parametrize(
    ("shape", "status"), [("not_found", 404), ("forbidden", 403), ("field_missing", 200)]
)
async def test_graphql_can_be_refused(gl: Client, shape: str, status: int) -> None:
    await gl.fault(kind="graphql_refused", shape=shape)
    async with gl.http.post(
        f"{gl.url}/api/graphql", headers=AUTH, json={"query": "{ currentUser { id } }"}
    ) as resp:
        assert resp.status == status
        if shape == "field_missing":
            assert "doesn't exist on type 'Project'" in (await resp.json())["errors"][0]["message"]
    assert (await gl.get("/api/v4/projects/1/jobs"))[0] == 200  # REST still answers


async def test_huge_scope_pages_at_100_and_an_oversized_page_ignores_the_cap(gl: Client) -> None:
    answer = await gl.ctl("POST", "/_sim/projects/7/jobs", {"tags": ["t"], "count": 100_000})
    assert len(answer["ids"]) == 100_000
    status, body, headers = await gl.get("/api/v4/projects/7/jobs?per_page=100000&scope[]=pending")
    assert (status, len(body)) == (200, 100)
    assert 'rel="next"' in headers["Link"]
    await gl.fault(kind="oversized_page", size=5000)
    status, body, _ = await gl.get("/api/v4/projects/7/jobs?per_page=100")
    assert (status, len(body)) == (200, 5000)


async def test_stats_count_requests_by_class(gl: Client) -> None:
    created = await gl.ctl("POST", "/_sim/projects/1/jobs", {"tags": [], "duration": 1})
    async with gl.http.post(
        f"{gl.url}/api/v4/user/runners", headers=AUTH, json={"runner_type": "instance_type"}
    ) as resp:
        runner = await resp.json()
    await gl.get("/api/v4/projects/1/jobs")
    await gl.get(f"/api/v4/projects/1/jobs/{created['id']}")
    await gl.get(f"/api/v4/runners/{runner['id']}/jobs")
    await gl.get("/api/v4/runners/all")
    async with gl.http.delete(f"{gl.url}/api/v4/runners/{runner['id']}", headers=AUTH):
        pass
    classes = (await gl.ctl("GET", "/_sim/stats"))["classes"]
    counts = {name: c["count"] for name, c in classes.items() if c["count"]}
    assert counts == {
        "job_poll": 1,
        "job_lookup": 1,
        "activity": 1,
        "registration": 1,
        "deletion": 1,
        "sweep": 1,
    }
    assert classes["job_poll"]["statuses"] == {"200": 1}
    assert (await gl.ctl("GET", "/_sim/stats?since=0"))["total"] == 0


async def test_faults_can_be_added_in_process_with_the_same_conveniences(gl: Client) -> None:
    rule = gl.sim.add_fault("forbidden", project=2, count=1)
    assert rule.match is not None
    assert (await gl.get("/api/v4/projects/2/jobs"))[0] == 403
    assert (await gl.get("/api/v4/projects/2/jobs"))[0] == 200
