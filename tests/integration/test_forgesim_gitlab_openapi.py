"""The GitLab forgesim's responses agree with GitLab's own OpenAPI description.

``tests/specs/gitlab-ci-runners.openapi.yaml`` is a verbatim excerpt of GitLab's generated
``openapi_v3.yaml`` (see its header). Response bodies are validated against the schema of
the matching path/method/status, and every status the sim answers must be documented.

The file is generated from Grape, and the generator loses three things GitLab really
sends. The test corrects exactly these, in code below, rather than bending the sim away
from real GitLab:

1. **Nullability**: no property is marked ``nullable``, but GitLab sends ``null`` for unset
   fields (``runner`` and ``started_at`` of a pending job, ``token_expires_at``...).
   Null-valued keys are dropped before validation.
2. **Arrays**: exposures with ``is_array`` lose the array: list endpoints such as
   ``GET /runners`` and ``GET /runners/:id/jobs`` are described by a single entity, as are
   ``projects``/``groups`` of a runner and ``steps``/``services``/... of a job request.
   A list is validated item by item where the spec gives a single-entity ``$ref``.
3. **Untyped exposures** (no ``documentation: {type:}``) are emitted as a bare
   ``{type: string}`` (e.g. ``run_untagged``, ``tag_list`` of runner details, every field
   of the job-request response). Such bare placeholders accept any JSON type; typed,
   described or exemplified properties stay strict.

Known deviation (asserted explicitly): ``DELETE /runners/:id`` is documented as 200 with a
body; GitLab's ``destroy_conditionally!`` answers 204 No Content, and so does the sim.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.forgesim.common import RunningSim
from tests.forgesim.gitlab import create_app
from tests.integration.openapi_check import SpecChecker, component, load_spec

SPEC_NAME = "gitlab-ci-runners.openapi.yaml"
TOKEN = "glpat-openapi"
AUTH = {"PRIVATE-TOKEN": TOKEN}


def _loosen(node: Any) -> Any:
    """Apply corrections 2 and 3 of the module docstring to a schema tree."""
    if isinstance(node, list):
        return [_loosen(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _loosen(v) for k, v in node.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        for name, prop in list(props.items()):
            if prop == {"type": "string"}:
                props[name] = {}  # untyped Grape exposure
            elif isinstance(prop, dict) and set(prop) == {"$ref"}:
                props[name] = {"anyOf": [prop, {"type": "array", "items": prop}]}
    return out


def _schema_fix(schema: Any) -> Any:
    """Corrections 2 (also for a whole list answer described by one entity) and 3."""
    fixed = _loosen(schema)
    if isinstance(fixed, dict) and set(fixed) == {"$ref"}:
        return {"anyOf": [fixed, {"type": "array", "items": fixed}]}
    return fixed


def _drop_nulls(value: Any) -> Any:
    """Correction 1."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec(SPEC_NAME)


def make_checker(spec: dict[str, Any]) -> SpecChecker:
    return SpecChecker(spec, schema_fix=_schema_fix, body_fix=_drop_nulls)


@pytest.fixture
async def env(
    spec: dict[str, Any],
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, SpecChecker]]:
    async with RunningSim(create_app(TOKEN)) as sim, aiohttp.ClientSession() as http:
        yield sim.url, http, make_checker(spec)
        async with http.get(f"{sim.url}/_sim/state") as resp:
            assert (await resp.json())["runners"] == []


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


def test_spec_excerpt_is_the_shared_one(spec: dict[str, Any]) -> None:
    assert spec["info"]["x-excerpt-of"]["repository"] == "gitlabhq/gitlabhq"
    assert "/api/v4/projects/{id}/jobs" in spec["paths"]


async def test_jobs_endpoints(env: tuple[str, aiohttp.ClientSession, SpecChecker]) -> None:
    url, http, check = env
    api = f"{url}/api/v4"
    await _call(http, "POST", f"{url}/_sim/projects/4/jobs", json={"tags": ["a"], "duration": 1})
    await _call(http, "POST", f"{url}/_sim/projects/4/jobs", json={"tags": [], "duration": 1})

    status, body = await _call(http, "GET", f"{api}/projects/4/jobs?scope[]=pending", headers=AUTH)
    assert len(body) == 2
    check.check("GET", "/api/v4/projects/{id}/jobs", status, body)
    status, body = await _call(http, "GET", f"{api}/projects/sim%2Fproject-4/jobs", headers=AUTH)
    check.check("GET", "/api/v4/projects/{id}/jobs", status, body)
    for bad_url, expected in ((f"{api}/projects/99/jobs", 404), (f"{api}/projects/4/jobs", 401)):
        headers = AUTH if expected != 401 else {"PRIVATE-TOKEN": "wrong"}
        status, body = await _call(http, "GET", bad_url, headers=headers)
        assert status == expected
        check.check("GET", "/api/v4/projects/{id}/jobs", status, body)
    status, body = await _call(http, "GET", f"{api}/projects/4/jobs?scope[]=nope", headers=AUTH)
    check.check("GET", "/api/v4/projects/{id}/jobs", status, body)

    _, listed = await _call(http, "GET", f"{api}/projects/4/jobs", headers=AUTH)
    job_id = listed[0]["id"]
    status, body = await _call(http, "GET", f"{api}/projects/4/jobs/{job_id}", headers=AUTH)
    assert body["id"] == job_id
    check.check("GET", "/api/v4/projects/{id}/jobs/{job_id}", status, body)
    assert check.checked == 6


async def test_runner_endpoints_and_runner_side(
    env: tuple[str, aiohttp.ClientSession, SpecChecker],
) -> None:
    url, http, check = env
    api = f"{url}/api/v4"
    await _call(http, "POST", f"{url}/_sim/projects/4/jobs", json={"tags": ["a"], "duration": 1})
    status, created = await _call(
        http,
        "POST",
        f"{api}/user/runners",
        headers=AUTH,
        json={
            "runner_type": "instance_type",
            "description": "r",
            "tag_list": ["a"],
            "run_untagged": False,
        },
    )
    assert status == 201
    assert created["token"].startswith("glrt-")
    rid, token = created["id"], created["token"]

    status, body = await _call(http, "POST", f"{api}/runners/verify", json={"token": token})
    check.check("POST", "/api/v4/runners/verify", status, body)
    status, body = await _call(http, "POST", f"{api}/runners/verify", json={"token": "glrt-no"})
    check.check("POST", "/api/v4/runners/verify", status, body)
    assert status == 403

    status, job = await _call(http, "POST", f"{api}/jobs/request", json={"token": token})
    assert status == 201
    check.check("POST", "/api/v4/jobs/request", status, job)
    for tok, expected in ((token, 204), ("glrt-no", 403)):
        status, body = await _call(http, "POST", f"{api}/jobs/request", json={"token": tok})
        assert status == expected
        check.check("POST", "/api/v4/jobs/request", status, body)

    for path, spec_path in (
        (f"{api}/runners", "/api/v4/runners"),
        (f"{api}/runners/all", "/api/v4/runners/all"),
        (f"{api}/runners/{rid}", "/api/v4/runners/{id}"),
        (f"{api}/runners/{rid}/jobs", "/api/v4/runners/{id}/jobs"),
        (f"{api}/runners/{rid}/jobs?status=running", "/api/v4/runners/{id}/jobs"),
        (f"{api}/runners/999", "/api/v4/runners/{id}"),
    ):
        status, body = await _call(http, "GET", path, headers=AUTH)
        check.check("GET", spec_path, status, body)
    status, body = await _call(http, "GET", f"{api}/runners", headers={"PRIVATE-TOKEN": "x"})
    check.check("GET", "/api/v4/runners", status, body)

    async with http.put(
        f"{api}/jobs/{job['id']}", json={"token": job["token"], "state": "success"}
    ) as resp:
        assert resp.status == 200
    status, body = await _call(http, "GET", f"{api}/runners/{rid}/jobs", headers=AUTH)
    assert body[0]["status"] == "success"
    check.check("GET", "/api/v4/runners/{id}/jobs", status, body)

    status, _ = await _call(http, "DELETE", f"{api}/runners/{rid}", headers=AUTH)
    documented = set(check.operation("/api/v4/runners/{id}", "DELETE")["responses"])
    assert status == 204  # GitLab's destroy_conditionally! (see module docstring)
    assert "200" in documented
    status, body = await _call(http, "DELETE", f"{api}/runners/{rid}", headers=AUTH)
    check.check("DELETE", "/api/v4/runners/{id}", status, body)
    assert status == 404


async def test_group_projects(env: tuple[str, aiohttp.ClientSession, SpecChecker]) -> None:
    url, http, check = env
    _, group = await _call(http, "POST", f"{url}/_sim/groups", json={"path": "g"})
    _, sub = await _call(
        http, "POST", f"{url}/_sim/groups", json={"path": "s", "parent_id": group["id"]}
    )
    await _call(http, "POST", f"{url}/_sim/projects", json={"path": "p", "group_id": sub["id"]})
    status, body = await _call(
        http, "GET", f"{url}/api/v4/groups/g/projects?include_subgroups=true", headers=AUTH
    )
    assert [p["path_with_namespace"] for p in body] == ["g/s/p"]
    check.check("GET", "/api/v4/groups/{id}/projects", status, body)
    status, body = await _call(http, "GET", f"{url}/api/v4/groups/nope/projects", headers=AUTH)
    check.check("GET", "/api/v4/groups/{id}/projects", status, body)


@pytest.mark.parametrize(
    "bad", [{"id": "not-an-int"}, {"tag_list": "a,b"}, {"created_at": "yesterday"}]
)
def test_corrections_do_not_hide_real_type_errors(spec: dict[str, Any], bad: Any) -> None:
    """A typed property still fails with the wrong type after the corrections."""
    checker = make_checker(spec)
    with pytest.raises(AssertionError):
        checker.validate(bad, component("APIEntitiesCiJob"))
    checker.validate({"id": 1, "tag_list": ["a"]}, component("APIEntitiesCiJob"))
