"""The GitLab simulator's GraphQL endpoint behaves as GitLab's schema says (issue 15).

The point of these tests is what GitLab allows: ``Project.jobs`` resolves for one project
per request (``FieldCallCount``), while ``projects { pipelines { jobs } }`` lists pending
jobs of many projects in one request within the complexity limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.forgesim.common import RunningSim
from tests.forgesim.gitlab import create_app

TOKEN = "glpat-graphql"
AUTH = {"PRIVATE-TOKEN": TOKEN}

MANY_PROJECTS = """
query($ids: [ID!], $after: String) {
  projects(ids: $ids, first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id fullPath
      pipelines(status: PENDING, first: 100) {
        nodes { id jobs(statuses: [PENDING], first: 100) {
          nodes { id name status tags createdAt pipeline { id } }
          pageInfo { hasNextPage endCursor }
        } }
      }
    }
  }
}
"""


class GraphQL:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http

    async def add_jobs(self, project: int, count: int = 1, **extra: Any) -> list[int]:
        body = {"tags": ["docker"], "count": count, **extra}
        async with self.http.post(f"{self.url}/_sim/projects/{project}/jobs", json=body) as resp:
            return list((await resp.json())["ids"])

    async def query(self, query: str, **variables: Any) -> dict[str, Any]:
        async with self.http.post(
            f"{self.url}/api/graphql", headers=AUTH, json={"query": query, "variables": variables}
        ) as resp:
            assert resp.status == 200
            answer: dict[str, Any] = await resp.json()
            return answer


async def _serve(admin: bool) -> AsyncIterator[GraphQL]:
    async with RunningSim(create_app(TOKEN, admin=admin)) as sim, aiohttp.ClientSession() as http:
        yield GraphQL(sim.url, http)


@pytest.fixture
async def gql() -> AsyncIterator[GraphQL]:
    async for client in _serve(admin=True):
        yield client


@pytest.fixture
async def gql_user() -> AsyncIterator[GraphQL]:
    async for client in _serve(admin=False):
        yield client


async def test_pending_jobs_of_100_projects_in_one_request(gql_user: GraphQL) -> None:
    wanted = {pid: await gql_user.add_jobs(pid) for pid in range(1, 101)}
    await gql_user.add_jobs(5, status="running")
    ids = [f"gid://gitlab/Project/{pid}" for pid in wanted]
    answer = await gql_user.query(MANY_PROJECTS, ids=ids)
    assert "errors" not in answer
    projects = answer["data"]["projects"]["nodes"]
    found = {
        job["id"]
        for project in projects
        for pipeline in project["pipelines"]["nodes"]
        for job in pipeline["jobs"]["nodes"]
    }
    assert found == {f"gid://gitlab/Ci::Build/{j}" for jobs in wanted.values() for j in jobs}
    job = projects[0]["pipelines"]["nodes"][0]["jobs"]["nodes"][0]
    assert (job["status"], job["tags"]) == ("PENDING", ["docker"])
    assert job["pipeline"]["id"].startswith("gid://gitlab/Ci::Pipeline/")


async def test_project_jobs_resolve_for_one_project_per_request(gql: GraphQL) -> None:
    for pid in (1, 2, 3):
        await gql.add_jobs(pid)
    answer = await gql.query(
        '{ projects(ids: ["gid://gitlab/Project/1", "gid://gitlab/Project/2", '
        '"gid://gitlab/Project/3"]) { nodes { fullPath jobs(statuses: [PENDING]) '
        "{ nodes { id } } } } }"
    )
    nodes = answer["data"]["projects"]["nodes"]
    assert len(nodes[0]["jobs"]["nodes"]) == 1
    assert [n["jobs"] for n in nodes[1:]] == [None, None]
    messages = {e["message"] for e in answer["errors"]}
    assert messages == {'"jobs" field can be requested only for 1 Project(s) at a time.'}
    assert [e["path"] for e in answer["errors"]] == [
        ["projects", "nodes", 1, "jobs"],
        ["projects", "nodes", 2, "jobs"],
    ]


async def test_instance_jobs_are_for_admins_only(gql: GraphQL, gql_user: GraphQL) -> None:
    query = "query($s: [CiJobStatus!]) { jobs(statuses: $s) { nodes { id } } }"
    await gql.add_jobs(1, 3)
    await gql_user.add_jobs(1, 3)
    assert len((await gql.query(query, s=["PENDING"]))["data"]["jobs"]["nodes"]) == 3
    assert (await gql_user.query(query, s=["PENDING"]))["data"]["jobs"]["nodes"] == []


async def test_pages_are_capped_at_100_and_followed_by_cursor(gql: GraphQL) -> None:
    await gql.add_jobs(1, 150)
    query = """query($after: String) { project(fullPath: "sim/project-1") {
      jobs(statuses: [PENDING], first: 500, after: $after) {
        count pageInfo { hasNextPage endCursor } edges { cursor node { id } } } } }"""
    first = (await gql.query(query))["data"]["project"]["jobs"]
    assert (first["count"], len(first["edges"]), first["pageInfo"]["hasNextPage"]) == (
        150,
        100,
        True,
    )
    after = first["pageInfo"]["endCursor"]
    second = (await gql.query(query, after=after))["data"]["project"]["jobs"]
    assert (len(second["edges"]), second["pageInfo"]["hasNextPage"]) == (50, False)
    seen = {e["node"]["id"] for e in first["edges"]} | {e["node"]["id"] for e in second["edges"]}
    assert len(seen) == 150


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            '{ project(fullPath: "x") { jobz { nodes { id } } } }',
            "Field 'jobz' doesn't exist on type 'Project'",
        ),
        ("{ jobs(colour: RED) { nodes { id } } }", "Field 'jobs' doesn't accept argument 'colour'"),
        ("{ jobs { nodes { id } }", "Expected name"),
        ("{ ...F } fragment F on Query { jobs { count } }", "sim: fragments are not supported"),
        ("mutation { x }", "sim: only queries are served"),
    ],
)
async def test_queries_outside_the_subset_are_errors(
    gql: GraphQL, query: str, message: str
) -> None:
    answer = await gql.query(query)
    assert "data" not in answer
    assert answer["errors"][0]["message"].startswith(message)


async def test_complexity_above_gitlabs_limit_is_refused(gql_user: GraphQL) -> None:
    job_fields = "id name status tags createdAt queuedAt startedAt"
    inner = f"jobs {{ nodes {{ {job_fields} pipeline {{ id project {{ id fullPath }} }} }} }}"
    aliases = " ".join(f'p{i}: project(fullPath: "a{i}") {{ {inner} }}' for i in range(10))
    answer = await gql_user.query(f"{{ {aliases} }}")
    message = answer["errors"][0]["message"]
    assert message.startswith("Query has complexity of ")
    assert message.endswith("which exceeds max complexity of 250")


async def test_a_refused_project_answers_null_jobs(gql: GraphQL) -> None:
    await gql.add_jobs(1)
    async with gql.http.post(
        f"{gql.url}/_sim/faults", json={"kind": "forbidden", "project": 1}
    ) as resp:
        assert resp.status == 200
    answer = await gql.query('{ project(fullPath: "sim/project-1") { jobs { nodes { id } } } }')
    assert answer["data"]["project"]["jobs"] is None
    assert "don't have permission" in answer["errors"][0]["message"]
