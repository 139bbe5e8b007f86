"""The GitHub simulator's faults do what the catalogue (tests/forgesim/README.md) says.

Each refusal is also read by PyGithub's own classifiers, so the sim's wording is the
wording real clients recognise; webhook payloads are checked against the ``x-webhooks``
schemas of the OpenAPI excerpt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from github.Requester import Requester

from tests.forgesim.common import RunningSim
from tests.forgesim.github import GitHubSim, create_app
from tests.integration.test_forgesim_github_openapi import check_schema, component

TOKEN = "ghp_faults"
AUTH = {"Authorization": f"token {TOKEN}"}
API = "/api/v3"


class Client:
    def __init__(self, running: RunningSim, http: aiohttp.ClientSession) -> None:
        self.url = running.url
        self.http = http
        self.sim: GitHubSim = next(v for v in running.app.values() if isinstance(v, GitHubSim))

    async def ctl(self, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.http.post(self.url + path, json=body or {}) as resp:
            assert resp.status == expect, await resp.text()
            return await resp.json()

    async def fault(self, **body: Any) -> None:
        await self.ctl("/_sim/faults", body)

    async def get(self, path: str, **headers: str) -> tuple[int, Any, Any]:
        url = path if path.startswith("http") else f"{self.url}{API}{path}"
        async with self.http.get(url, headers={**AUTH, **headers}) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body, resp.headers


@pytest.fixture
async def gh() -> AsyncIterator[Client]:
    async with RunningSim(create_app(TOKEN)) as running, aiohttp.ClientSession() as http:
        client = Client(running, http)
        await client.ctl("/_sim/orgs/acme/repos", {"repos": ["one", "two"]})
        yield client


async def test_one_repository_refuses_the_token_while_the_other_answers(gh: Client) -> None:
    await gh.fault(kind="forbidden", repo="acme/one")
    status, body, _ = await gh.get("/repos/acme/one/actions/runs?status=queued")
    assert status == 403
    assert body["message"] == "Resource not accessible by personal access token"
    check_schema(body, component("basic-error"))
    repo_id = gh.sim.repos["acme/one"].id
    assert (await gh.get(f"/repositories/{repo_id}/actions/runs"))[0] == 403
    assert (await gh.get("/repos/acme/two/actions/runs?status=queued"))[0] == 200


async def test_a_hidden_repository_is_404(gh: Client) -> None:
    await gh.fault(kind="forbidden", repo="acme/one", shape="not_found")
    status, body, _ = await gh.get("/repos/acme/one/actions/runs")
    assert (status, body["message"]) == (404, "Not Found")


@pytest.mark.parametrize("status", [403, 429])
async def test_primary_limit_has_remaining_zero_and_a_reset(gh: Client, status: int) -> None:
    await gh.fault(kind="rate_limit", shape="primary", status=status, reset_in=120, count=1)
    got, body, headers = await gh.get("/repos/acme/one/actions/runs")
    assert got == status
    assert headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(headers["x-ratelimit-reset"]) - time.time() <= 121
    assert "Retry-After" not in headers
    assert Requester.isPrimaryRateLimitError(body["message"])


@pytest.mark.parametrize(
    ("shape", "status", "retry_after"),
    [
        ("secondary", 403, 60),
        ("secondary", 429, None),
        ("abuse", 403, None),
        ("abuse", 403, "30"),
    ],
)
async def test_secondary_limits_with_and_without_retry_after(
    gh: Client, shape: str, status: int, retry_after: Any
) -> None:
    await gh.fault(kind="rate_limit", shape=shape, status=status, retry_after=retry_after, count=1)
    got, body, headers = await gh.get("/repos/acme/one/actions/runs")
    assert got == status
    assert headers.get("Retry-After") == (None if retry_after is None else str(retry_after))
    assert int(headers["x-ratelimit-remaining"]) > 0  # not the primary limit
    assert Requester.isSecondaryRateLimitError(body["message"])
    if shape == "abuse":
        assert body["message"].startswith("You have triggered an abuse detection mechanism")


async def test_the_secondary_limit_counts_304s_the_primary_does_not(gh: Client) -> None:
    await gh.fault(kind="secondary_limit", per_minute=3)
    status, _, headers = await gh.get("/repos/acme/one/actions/runs?status=queued")
    assert status == 200
    used = int(headers["x-ratelimit-used"])
    etag = headers["ETag"]
    for _ in range(2):
        status, _, headers = await gh.get(
            "/repos/acme/one/actions/runs?status=queued", **{"If-None-Match": etag}
        )
        assert status == 304
        assert int(headers["x-ratelimit-used"]) == used  # free for the primary limit
    status, body, _ = await gh.get(
        "/repos/acme/one/actions/runs?status=queued", **{"If-None-Match": etag}
    )
    assert status == 403
    assert Requester.isSecondaryRateLimitError(body["message"])


async def _running_job(gh: Client) -> int:
    job = await gh.ctl("/_sim/repos/acme/one/jobs", {"labels": ["linux"]})
    async with gh.sim.lock:
        found = gh.sim.jobs[job["id"]]
        found.status, found.started_at = "in_progress", time.time()
    return int(found.run_id)


async def test_without_churn_a_running_job_is_not_modified(gh: Client) -> None:
    run_id = await _running_job(gh)
    path = f"/repos/acme/one/actions/runs/{run_id}/jobs"
    _, _, headers = await gh.get(path)
    assert (await gh.get(path, **{"If-None-Match": headers["ETag"]}))[0] == 304


async def test_churning_steps_change_the_etag_of_a_running_job(gh: Client) -> None:
    run_id = await _running_job(gh)
    await gh.fault(kind="churn", step_seconds=0.05)
    path = f"/repos/acme/one/actions/runs/{run_id}/jobs"
    _, body, headers = await gh.get(path)
    assert body["jobs"][0]["steps"]
    check_schema(body["jobs"][0], component("job"))
    await asyncio.sleep(0.1)  # one more step completes
    status, _, again = await gh.get(path, **{"If-None-Match": headers["ETag"]})
    assert status == 200
    assert again["ETag"] != headers["ETag"]


async def test_links_use_the_repositories_and_organizations_id_form(gh: Client) -> None:
    await gh.ctl("/_sim/orgs/acme/repos", {"repos": [f"r{i}" for i in range(150)]})
    for _ in range(3):
        await gh.ctl("/_sim/repos/acme/one/jobs", {"labels": ["x"]})
    await gh.fault(kind="id_links")
    org_id, repo_id = gh.sim.orgs["acme"], gh.sim.repos["acme/one"].id
    _, first, headers = await gh.get("/orgs/acme/repos?per_page=100")
    next_url = headers["Link"].split(";")[0].strip("<>")
    assert f"/api/v3/organizations/{org_id}/repos?" in next_url
    _, second, _ = await gh.get(next_url)
    assert len(first) + len(second) == 152
    _, _, headers = await gh.get("/repos/acme/one/actions/runs?per_page=2")
    next_url = headers["Link"].split(";")[0].strip("<>")
    assert f"/api/v3/repositories/{repo_id}/actions/runs?" in next_url
    _, runs, _ = await gh.get(next_url)
    assert runs["total_count"] == 3
    assert len(runs["workflow_runs"]) == 1


async def test_a_huge_queue_pages_at_100(gh: Client) -> None:
    run = await gh.ctl("/_sim/repos/acme/one/runs")
    await gh.ctl(
        "/_sim/repos/acme/one/jobs", {"labels": ["x"], "run_id": run["id"], "count": 100_000}
    )
    _, body, headers = await gh.get(f"/repos/acme/one/actions/runs/{run['id']}/jobs?per_page=500")
    assert (body["total_count"], len(body["jobs"])) == (100_000, 100)
    assert 'rel="last"' in headers["Link"]
    await gh.fault(kind="oversized_page", size=3000)
    _, body, _ = await gh.get(f"/repos/acme/one/actions/runs/{run['id']}/jobs")
    assert len(body["jobs"]) == 3000


async def test_a_deployment_job_waits_for_approval(gh: Client) -> None:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(await request.json())
        return web.Response()

    target_app = web.Application()
    target_app.router.add_post("/hook", hook)
    async with RunningSim(target_app) as target:
        await gh.ctl("/_sim/webhook-target", {"url": f"{target.url}/hook", "secret": "s"})
        job = await gh.ctl("/_sim/repos/acme/one/jobs", {"labels": ["linux"], "status": "waiting"})
        queued = await asyncio.wait_for(received.get(), 5)
        waiting = await asyncio.wait_for(received.get(), 5)
    # octokit/webhooks: queued.with-deployment (job still "waiting") then waiting.
    assert (queued["action"], queued["workflow_job"]["status"]) == ("queued", "waiting")
    assert queued["deployment"]["environment"] == "production"
    assert (waiting["action"], waiting["workflow_job"]["status"]) == ("waiting", "waiting")
    check_schema(queued, component("webhook-workflow-job-queued"))
    check_schema(waiting, component("webhook-workflow-job-waiting"))
    assert (await gh.get("/repos/acme/one/actions/runs?status=queued"))[1]["total_count"] == 0
    _, runs, _ = await gh.get("/repos/acme/one/actions/runs?status=waiting")
    assert runs["total_count"] == 1
    await gh.ctl(f"/_sim/jobs/{job['id']}/approve")
    assert (await gh.get("/repos/acme/one/actions/runs?status=queued"))[1]["total_count"] == 1


@pytest.mark.parametrize("action", ["queued", "waiting", "in_progress", "completed"])
async def test_payload_builders_match_the_webhook_schemas(gh: Client, action: str) -> None:
    job = await gh.ctl("/_sim/repos/acme/one/jobs", {"labels": ["linux"]})
    found = gh.sim.jobs[job["id"]]
    if action == "waiting":
        found.status, found.environment = "waiting", "production"
    if action in {"in_progress", "completed"}:
        found.status, found.started_at = "in_progress", time.time()
        found.runner_id, found.runner_name = 7, "ro-it1-7"
    if action == "completed":
        found.status, found.conclusion, found.completed_at = "completed", "success", time.time()
    payload = await gh.ctl(f"/_sim/jobs/{job['id']}/webhook", {"action": action})
    schema = {"in_progress": "in-progress"}.get(action, action)
    check_schema(payload, component(f"webhook-workflow-job-{schema}"))


async def test_github_stats_classes(gh: Client) -> None:
    await gh.get("/repos/acme/one/actions/runs?status=queued")
    body = {"name": "r1", "runner_group_id": 1, "labels": ["self-hosted"]}
    async with gh.http.post(
        f"{gh.url}{API}/orgs/acme/actions/runners/generate-jitconfig", headers=AUTH, json=body
    ) as resp:
        runner_id = (await resp.json())["runner"]["id"]
    await gh.get(f"/orgs/acme/actions/runners/{runner_id}")
    await gh.get("/orgs/acme/actions/runners")
    async with gh.http.delete(
        f"{gh.url}{API}/orgs/acme/actions/runners/{runner_id}", headers=AUTH
    ) as resp:
        assert resp.status == 204
    async with gh.http.get(f"{gh.url}/_sim/stats") as resp:
        classes = (await resp.json())["classes"]
    counts = {name: c["count"] for name, c in classes.items() if c["count"]}
    assert counts == {
        "job_poll": 1,
        "registration": 1,
        "activity": 1,
        "sweep": 1,
        "deletion": 1,
    }
