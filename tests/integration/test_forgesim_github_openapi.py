"""The GitHub simulator's answers agree with the official OpenAPI excerpt.

``tests/specs/github-actions-runners.openapi.yaml`` is a verbatim excerpt of GitHub's REST
description. Each API answer of the simulator is checked against its operation (status
documented, content type, body schema with formats), and its body against the component
schema of the object it carries. Webhook payloads are checked against
the ``x-webhooks`` schemas. The mechanism (:mod:`tests.integration.openapi_check`) is the
one the GitLab simulator's conformance test uses.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web

from tests.forgesim.common import RunningSim
from tests.forgesim.github import create_app
from tests.integration.openapi_check import SpecChecker, component, load_spec

SPEC_NAME = "github-actions-runners.openapi.yaml"
TOKEN = "ghp_spec"
HEADERS = {"Authorization": f"token {TOKEN}", "Accept": "application/vnd.github+json"}


def _allow_null_in_nullable_enums(node: Any) -> None:
    """Add ``None`` to the ``enum`` of every ``nullable`` schema.

    GitHub's description writes e.g. a job's ``conclusion`` as ``nullable: true`` with an
    enum that lacks ``null``, and GitHub really sends ``null`` for a queued job. OAS 3.0.3
    says ``nullable`` does not widen an ``enum``, so strict validators reject the real
    answer; this is the description's bug, not the simulator's.
    """
    if isinstance(node, dict):
        enum = node.get("enum")
        if node.get("nullable") is True and isinstance(enum, list) and None not in enum:
            enum.append(None)
        for value in node.values():
            _allow_null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _allow_null_in_nullable_enums(value)


def _fix(node: Any) -> Any:
    _allow_null_in_nullable_enums(node)
    return node


@functools.cache
def spec_checker() -> SpecChecker:
    return SpecChecker(load_spec(SPEC_NAME), prefix="/api/v3", schema_fix=_fix)


def check_schema(body: Any, schema: dict[str, Any]) -> None:
    """Validate ``body`` against a schema whose ``#/components/...`` refs are the spec's."""
    spec_checker().validate(body, schema)


class Checker:
    """Sends requests (in a thread: requests is blocking) and checks the answers."""

    def __init__(self, base: str) -> None:
        self.base = base

    async def call(
        self, method: str, path: str, *, json: Any = None, expect: int = 200
    ) -> requests.Response:
        def send() -> requests.Response:
            return requests.request(
                method, f"{self.base}/api/v3{path}", headers=HEADERS, json=json, timeout=10
            )

        response = await asyncio.to_thread(send)
        assert response.status_code == expect, response.text
        content_type = response.headers.get("Content-Type", "").split(";")[0]
        body = response.json() if content_type == "application/json" else None
        spec_checker().check(method, f"/api/v3{path}", expect, body, content_type)
        return response


@pytest.fixture
async def checker() -> AsyncIterator[tuple[Checker, aiohttp.ClientSession, str]]:
    async with RunningSim(create_app(TOKEN)) as running, aiohttp.ClientSession() as http:
        yield Checker(running.url), http, running.url


async def _control(http: aiohttp.ClientSession, url: str, body: Any = None) -> Any:
    async with http.post(url, json=body or {}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_runs_and_jobs_match_the_spec(
    checker: tuple[Checker, aiohttp.ClientSession, str],
) -> None:
    check, http, base = checker
    run = await _control(http, f"{base}/_sim/repos/octo/app/runs")
    job = await _control(
        http, f"{base}/_sim/repos/octo/app/jobs", {"labels": ["linux"], "run_id": run["id"]}
    )
    await _control(http, f"{base}/_sim/repos/octo/app/jobs", {"labels": ["gpu"]})

    runs = (await check.call("GET", "/repos/octo/app/actions/runs?status=queued")).json()
    assert runs["total_count"] == 2
    for item in runs["workflow_runs"]:
        check_schema(item, component("workflow-run"))
    jobs = (await check.call("GET", f"/repos/octo/app/actions/runs/{run['id']}/jobs")).json()
    assert [j["id"] for j in jobs["jobs"]] == [job["id"]]
    check_schema(jobs["jobs"][0], component("job"))
    single = (await check.call("GET", f"/repos/octo/app/actions/jobs/{job['id']}")).json()
    check_schema(single, component("job"))
    rate = (await check.call("GET", "/rate_limit")).json()
    check_schema(rate, component("rate-limit-overview"))


async def test_runner_endpoints_match_the_spec(
    checker: tuple[Checker, aiohttp.ClientSession, str],
) -> None:
    check, http, base = checker
    await _control(http, f"{base}/_sim/orgs/acme/repos", {"repos": ["one"]})
    for scope in ("/repos/acme/one", "/orgs/acme"):
        runners = f"{scope}/actions/runners"
        body = {"name": "ro-x-1", "runner_group_id": 1, "labels": ["self-hosted", "linux"]}
        jit = await check.call("POST", f"{runners}/generate-jitconfig", json=body, expect=201)
        check_schema(jit.json()["runner"], component("runner"))
        dup = await check.call("POST", f"{runners}/generate-jitconfig", json=body, expect=409)
        check_schema(dup.json(), component("basic-error"))
        token = await check.call("POST", f"{runners}/registration-token", expect=201)
        check_schema(token.json(), component("authentication-token"))
        if scope.startswith("/repos"):
            removal = await check.call("POST", f"{runners}/remove-token", expect=201)
            check_schema(removal.json(), component("authentication-token"))
        listed = (await check.call("GET", runners)).json()
        assert listed["total_count"] == 1
        check_schema(listed["runners"][0], component("runner"))
        runner_id = jit.json()["runner"]["id"]
        one = (await check.call("GET", f"{runners}/{runner_id}")).json()
        check_schema(one, component("runner"))

        # Busy: the delete is refused with the spec's 422 shape.
        secret = _jit_secret(jit.json()["encoded_jit_config"])
        await _control(http, f"{base}/_sim/repos/acme/one/jobs", {"labels": ["linux"]})
        async with http.post(
            f"{base}/_runner/acquire", headers={"Authorization": f"RunnerToken {secret}"}
        ) as resp:
            assert resp.status == 200
            job_id = (await resp.json())["job_id"]
        refused = await check.call("DELETE", f"{runners}/{runner_id}", expect=422)
        check_schema(refused.json(), component("validation-error-simple"))
        async with http.post(
            f"{base}/_runner/jobs/{job_id}/complete",
            headers={"Authorization": f"RunnerToken {secret}"},
            json={"conclusion": "success"},
        ) as resp:
            assert resp.status == 200
        # The JIT runner is gone after its job; a fresh one is deleted with 204.
        fresh = await check.call("POST", f"{runners}/generate-jitconfig", json=body, expect=201)
        await check.call("DELETE", f"{runners}/{fresh.json()['runner']['id']}", expect=204)


def _jit_secret(encoded: str) -> str:
    return str(json.loads(base64.b64decode(encoded))["token"])


async def test_webhook_payloads_match_the_spec(
    checker: tuple[Checker, aiohttp.ClientSession, str],
) -> None:
    _check, http, base = checker
    received: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((request.headers["X-GitHub-Event"], await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with RunningSim(app) as target:
        await _control(
            http, f"{base}/_sim/webhook-target", {"url": f"{target.url}/hook", "secret": "s"}
        )
        await _control(http, f"{base}/_sim/repos/octo/app/jobs", {"labels": ["linux"]})
        event, payload = await asyncio.wait_for(received.get(), 5)
    assert event == "workflow_job"
    assert payload["action"] == "queued"
    check_schema(payload, component("webhook-workflow-job-queued"))


def test_the_checker_refuses_what_the_spec_does_not_say() -> None:
    checker = spec_checker()
    runs = "/api/v3/repos/octo/app/actions/runs"
    with pytest.raises(AssertionError, match="undocumented 418"):
        checker.check("GET", runs, 418, None)
    with pytest.raises(AssertionError):
        checker.check("GET", runs, 200, {"total_count": "many", "workflow_runs": []})
    with pytest.raises(AssertionError, match="text/html not documented"):
        checker.check("GET", runs, 200, None, "text/html")
    checker.check("GET", runs, 200, {"total_count": 0, "workflow_runs": []})
