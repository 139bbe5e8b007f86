"""The GitHub simulator's answers agree with the official OpenAPI excerpt.

``tests/specs/github-actions-runners.openapi.yaml`` is a verbatim excerpt of GitHub's REST
description. Each API answer of the simulator is checked against its operation (status
documented, content type, body schema with formats), and its body against the component
schema of the object it carries. Webhook payloads are checked against
the ``x-webhooks`` schemas. The GitHub App token exchange is checked both ways: the
simulator's answers against ``apps/create-installation-access-token``, and the request our
client sends (method, path, parameter, body, headers) against the same operation. The
mechanism (:mod:`tests.integration.openapi_check`) is the one the GitLab simulator's
conformance test uses.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
import requests
from aiohttp import web

from tests.appkeys import app_key_pair, app_provider
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


# ---------------------------------------------------------------------------------------
# The GitHub App installation-token exchange: apps/create-installation-access-token.

APP_ID = "4242"
INSTALLATION = 77
EXCHANGE = f"/app/installations/{INSTALLATION}/access_tokens"
EXCHANGE_OP = "apps/create-installation-access-token"
APP_PRIVATE_KEY, APP_PUBLIC_KEY = app_key_pair()


def app_jwt(key: str = APP_PRIVATE_KEY, *, lifetime: int = 540) -> str:
    """What GitHub's docs ask for: RS256, ``iss`` the App id, ``iat`` back-dated 60 s."""
    now = int(time.time())
    claims = {"iat": now - 60, "exp": now - 60 + lifetime, "iss": APP_ID}
    return jwt.encode(claims, key, algorithm="RS256")


def _exchange_operation() -> dict[str, Any]:
    op = spec_checker().operation(f"/api/v3{EXCHANGE}", "POST")
    assert op["operationId"] == EXCHANGE_OP
    return op


async def _exchange(
    base: str,
    *,
    authorization: str | None,
    path: str = EXCHANGE,
    body: bytes = b"",
    expect: int,
) -> Any:
    """POST the exchange as a client would, check the answer against the operation."""
    headers = {"Accept": "application/vnd.github+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    if body:
        headers["Content-Type"] = "application/json"

    def send() -> requests.Response:
        return requests.post(f"{base}/api/v3{path}", headers=headers, data=body, timeout=10)

    response = await asyncio.to_thread(send)
    assert response.status_code == expect, response.text
    content_type = response.headers.get("Content-Type", "").split(";")[0]
    answer = response.json()
    spec_checker().check("POST", f"/api/v3{path}", expect, answer, content_type)
    return answer


@pytest.fixture
async def app_sim() -> AsyncIterator[str]:
    async with RunningSim(create_app(TOKEN)) as running, aiohttp.ClientSession() as http:
        await _control(http, f"{running.url}/_sim/repos/octo/app")
        body = {"app_id": APP_ID, "public_key": APP_PUBLIC_KEY, "installation_id": INSTALLATION}
        await _control(http, f"{running.url}/_sim/apps", body)
        yield running.url


async def test_the_token_exchange_answers_the_official_installation_token(app_sim: str) -> None:
    whole = await _exchange(app_sim, authorization=f"Bearer {app_jwt()}", expect=201)
    check_schema(whole, component("installation-token"))
    assert whole["repository_selection"] == "all"
    assert set(whole["permissions"]) >= {"administration"}  # what registering runners needs

    # The documented body narrows the grant; what is sent is a valid requestBody first.
    narrow = {"repositories": ["app"], "permissions": {"actions": "read"}}
    request_schema = _exchange_operation()["requestBody"]["content"]["application/json"]
    check_schema(narrow, request_schema["schema"])
    narrowed = await _exchange(
        app_sim,
        authorization=f"Bearer {app_jwt()}",
        body=json.dumps(narrow).encode(),
        expect=201,
    )
    check_schema(narrowed, component("installation-token"))
    assert narrowed["permissions"] == {"actions": "read"}
    assert narrowed["repository_selection"] == "selected"


@pytest.mark.parametrize(
    ("why", "authorization", "path", "body", "status"),
    [
        ("no credential", None, EXCHANGE, b"", 401),
        ("a PAT, not a JWT", f"token {TOKEN}", EXCHANGE, b"", 401),
        ("a JWT signed with another key", "other-key", EXCHANGE, b"", 401),
        ("a JWT living longer than 10 minutes", "long-jwt", EXCHANGE, b"", 401),
        (
            "an installation the App does not have",
            "jwt",
            "/app/installations/5/access_tokens",
            b"",
            404,
        ),
        ("a body that is not an object", "jwt", EXCHANGE, b"[1]", 422),
        ("a body that is not JSON", "jwt", EXCHANGE, b"{", 422),
        ("repositories of the wrong type", "jwt", EXCHANGE, b'{"repositories": "app"}', 422),
        (
            "a permission the App was not granted",
            "jwt",
            EXCHANGE,
            b'{"permissions": {"contents": "read"}}',
            422,
        ),
        (
            "more than the granted level",
            "jwt",
            EXCHANGE,
            b'{"permissions": {"actions": "write"}}',
            422,
        ),
        (
            "a repository the installation cannot see",
            "jwt",
            EXCHANGE,
            b'{"repository_ids": [999999]}',
            422,
        ),
    ],
)
async def test_refused_exchanges_answer_the_documented_status_and_shape(
    app_sim: str, why: str, authorization: str | None, path: str, body: bytes, status: int
) -> None:
    credential = {
        "other-key": f"Bearer {app_jwt(app_key_pair()[0])}",
        "long-jwt": f"Bearer {app_jwt(lifetime=3600)}",
        "jwt": f"Bearer {app_jwt()}",
    }.get(authorization or "", authorization)
    responses = _exchange_operation()["responses"]
    assert str(status) in responses, why  # the operation lists 401, 403, 404 and 422
    answer = await _exchange(app_sim, authorization=credential, path=path, body=body, expect=status)
    # 401/403/404 are basic-error, 422 validation-error (#/components/responses/...).
    shape = "validation-error" if status == 422 else "basic-error"
    check_schema(answer, component(shape))
    assert answer["message"], why


Recorded = dict[str, Any]


def _recording_exchanges(seen: list[Recorded]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/access_tokens"):
            seen.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "headers": dict(request.headers),
                    "body": await request.read(),  # cached: the handler reads it again
                }
            )
        return await handler(request)

    return record


async def test_our_clients_exchange_request_is_the_documented_operation() -> None:
    seen: list[Recorded] = []
    sim_app = create_app(TOKEN)
    sim_app.middlewares.append(_recording_exchanges(seen))
    async with RunningSim(sim_app) as running, aiohttp.ClientSession() as http:
        await _control(http, f"{running.url}/_sim/repos/octo/app")
        await _control(
            http,
            f"{running.url}/_sim/apps",
            {"app_id": APP_ID, "public_key": APP_PUBLIC_KEY, "installation_id": INSTALLATION},
        )
        gh = app_provider(
            running.url,
            app_id=APP_ID,
            installation_id=INSTALLATION,
            private_key=APP_PRIVATE_KEY,
            instance_id="spec",
        )
        try:
            assert await gh.pending_jobs() == []
        finally:
            await gh.aclose()

    assert len(seen) == 1, seen
    sent = seen[0]
    op = spec_checker().operation(sent["path"], sent["method"])
    assert op["operationId"] == EXCHANGE_OP, sent["path"]
    assert sent["method"] == "POST"
    assert sent["path"] == f"/api/v3{EXCHANGE}"
    # The path parameter: #/components/parameters/installation-id (an integer).
    (ref,) = (p["$ref"] for p in op["parameters"])
    parameter = spec_checker().spec["components"]["parameters"][ref.rsplit("/", 1)[-1]]
    assert parameter["name"] == "installation_id" and parameter["in"] == "path"
    segment = sent["path"].split("/")[-2]
    assert segment.isdigit(), segment
    check_schema(int(segment), parameter["schema"])
    # The body is optional (requestBody.required false); one that is sent must be its JSON.
    request_body = op["requestBody"]
    if sent["body"]:
        content_type = sent["headers"].get("Content-Type", "").split(";")[0]
        assert content_type in request_body["content"], content_type
        check_schema(json.loads(sent["body"]), request_body["content"][content_type]["schema"])
    else:
        assert request_body["required"] is False
    # Every documented answer is JSON; we ask for GitHub's JSON media type.
    responses = spec_checker().spec["components"]["responses"]
    for listed in op["responses"].values():
        response = responses[listed["$ref"].rsplit("/", 1)[-1]] if "$ref" in listed else listed
        assert set(response.get("content", {})) <= {"application/json"}, response
    assert sent["headers"].get("Accept") in ("application/vnd.github+json", "application/json")
    # "You must use a JWT": Bearer, RS256, issued by the App.
    scheme, _, token = sent["headers"]["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, APP_PUBLIC_KEY, algorithms=["RS256"])
    assert str(claims["iss"]) == APP_ID
    assert claims["exp"] - claims["iat"] <= 600 + 60
