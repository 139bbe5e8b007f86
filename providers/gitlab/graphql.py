"""Pending jobs of many GitLab projects in one GraphQL request (issue 15), REST behind it.

``Project.jobs`` resolves for one project per request (GitLab's ``FieldCallCount`` limit
of 1 on ``Resolvers::ProjectJobsResolver``), so the many-project shape goes through
pipelines, which carry no such limit::

    projects(ids: [...]) { nodes { id fullPath
      pending: pipelines(status: PENDING) { nodes { jobs(statuses: [PENDING]) {...} } }
      running: pipelines(status: RUNNING) { nodes { jobs(statuses: [PENDING]) {...} } } } }

A pending job sits in a ``pending`` pipeline, or in a ``running`` one when another job of
the pipeline already runs, hence both. Configured projects given by path go through
``projects(fullPaths:)`` (at most 50 per request in GitLab). One request covers up to 100
projects by id.

Anything this poll cannot vouch for is handed back to the REST poll: a project missing
from the answer (refused, deleted), or one whose pipelines or jobs did not fit on one
page. A GraphQL endpoint that refuses the query (404/403, schema errors) is not asked
again for an hour; a transient failure falls back to REST for that round only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from providers.base import PendingJob
from providers.budget import Budget, Priority
from providers.errors import (
    PermanentProviderError,
    ProviderAuthError,
    RateLimited,
    TransientProviderError,
)
from providers.gitlab.client import JSON, GitLabClient
from providers.gitlab.parse import Project
from providers.wire import parse_time

IDS_PER_REQUEST = 100
PATHS_PER_REQUEST = 50  # GitLab: "You cannot provide more than 50 full paths"
PIPELINES_PER_PROJECT = 20
JOBS_PER_PIPELINE = 50
REFUSED_RETRY_S = 3600.0


def _gid(value: object) -> str:
    return str(value or "").rsplit("/", 1)[-1]


def build_query(statuses: Sequence[str], with_ids: bool, with_paths: bool) -> str:
    """The query text for one batch (statuses are REST names: ``pending``, ``created``)."""
    job_statuses = ", ".join(s.upper() for s in statuses)
    pipeline_statuses = ["PENDING", "RUNNING", *(["CREATED"] if "created" in statuses else [])]
    jobs = (
        f"jobs(statuses: [{job_statuses}], first: {JOBS_PER_PIPELINE}) "
        "{ pageInfo { hasNextPage } nodes { id name status tags createdAt } }"
    )
    pipelines = " ".join(
        f"{status.lower()}: pipelines(status: {status}, first: {PIPELINES_PER_PROJECT}) "
        f"{{ pageInfo {{ hasNextPage }} nodes {{ id {jobs} }} }}"
        for status in pipeline_statuses
    )
    node = f"nodes {{ id fullPath {pipelines} }}"
    roots = []
    if with_ids:
        roots.append(f"byId: projects(ids: $ids, first: {IDS_PER_REQUEST}) {{ {node} }}")
    if with_paths:
        roots.append(
            f"byPath: projects(fullPaths: $paths, first: {PATHS_PER_REQUEST}) {{ {node} }}"
        )
    return "query($ids: [ID!], $paths: [String!]) { " + " ".join(roots) + " }"


class GraphQLPoll:
    """The many-projects poll; REST (:func:`providers.scopes.poll_scopes`) takes the rest."""

    def __init__(
        self,
        client: GitLabClient,
        statuses: Callable[[], list[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._statuses = statuses
        self._clock = clock
        self._refused_until = float("-inf")
        self.note = ""

    def usable(self) -> bool:
        return self._clock() >= self._refused_until

    @staticmethod
    def requests_for(keys: Sequence[str]) -> int:
        """GraphQL requests one round of these projects costs (ids and paths batch apart)."""
        ids = sum(1 for k in keys if k.isdigit())
        return max(
            math.ceil(ids / IDS_PER_REQUEST), math.ceil((len(keys) - ids) / PATHS_PER_REQUEST)
        )

    async def poll(
        self, projects: Sequence[Project], budget: Budget
    ) -> tuple[dict[str, list[PendingJob]], set[str]]:
        """``(answers by project key, keys the REST poll must ask)`` for this round.

        Projects are taken in the given order (stalest first) as far as the job-poll
        budget allows; the ones left out keep their last answer until the next round.
        """
        by_id = [p for p in projects if p.key.isdigit()]
        by_path = [p for p in projects if not p.key.isdigit()]
        batches = max(
            math.ceil(len(by_id) / IDS_PER_REQUEST), math.ceil(len(by_path) / PATHS_PER_REQUEST)
        )
        batches = min(batches, budget.available(Priority.JOB_POLL))
        answers: dict[str, list[PendingJob]] = {}
        leftover: set[str] = set()
        for n in range(batches):
            ids = by_id[n * IDS_PER_REQUEST : (n + 1) * IDS_PER_REQUEST]
            paths = by_path[n * PATHS_PER_REQUEST : (n + 1) * PATHS_PER_REQUEST]
            try:
                answer = await self._ask(ids, paths)
            except (RateLimited, ProviderAuthError):
                raise
            except TransientProviderError as exc:
                self.note = f"GraphQL poll failed this round ({exc}); REST instead"
                return answers, {p.key for p in projects} - set(answers)
            except PermanentProviderError as exc:
                self._refused_until = self._clock() + REFUSED_RETRY_S
                self.note = f"GraphQL poll refused ({exc}); REST for the next hour"
                return answers, {p.key for p in projects} - set(answers)
            got, missing = self._read(answer, ids, paths)
            answers.update(got)
            leftover |= missing
        self.note = ""
        return answers, leftover

    async def _ask(self, ids: Sequence[Project], paths: Sequence[Project]) -> JSON:
        query = build_query(self._statuses(), bool(ids), bool(paths))
        variables = {
            "ids": [f"gid://gitlab/Project/{p.key}" for p in ids],
            "paths": [p.key for p in paths],
        }
        url = self._client.gl.url.rstrip("/") + "/api/graphql"
        answer = await self._client.call(
            Priority.JOB_POLL,
            lambda: self._client.post(url, {"query": query, "variables": variables}),
        )
        data = answer.get("data")
        if not isinstance(data, dict) or (answer.get("errors") and not any(data.values())):
            raise PermanentProviderError(f"GitLab GraphQL errors: {answer.get('errors')!r:.300}")
        return data

    def _read(
        self, data: Mapping[str, Any], ids: Sequence[Project], paths: Sequence[Project]
    ) -> tuple[dict[str, list[PendingJob]], set[str]]:
        wanted = {p.key: p for p in ids}
        wanted.update({p.key.lower(): p for p in paths})
        got: dict[str, list[PendingJob]] = {}
        incomplete: set[str] = set()
        for root in ("byId", "byPath"):
            connection = data.get(root) or {}
            for node in connection.get("nodes") or ():
                if not isinstance(node, dict):
                    continue
                project = wanted.get(_gid(node.get("id"))) or wanted.get(
                    str(node.get("fullPath") or "").lower()
                )
                if project is None:
                    continue
                jobs = self._jobs_of(node, project.scope)
                if jobs is None:
                    incomplete.add(project.key)
                else:
                    got[project.key] = jobs
        missing = {p.key for p in [*ids, *paths]} - set(got)
        return got, missing | incomplete

    def _jobs_of(self, node: Mapping[str, Any], scope: str) -> list[PendingJob] | None:
        """The project's waiting jobs, or None when the answer is partial."""
        statuses = set(self._statuses())
        found: dict[str, PendingJob] = {}
        for alias in ("pending", "running", "created"):
            if alias not in node:
                continue
            pipelines = node.get(alias)
            if not isinstance(pipelines, dict):
                return None  # refused or errored for this project: REST decides
            if (pipelines.get("pageInfo") or {}).get("hasNextPage"):
                return None
            for pipeline in pipelines.get("nodes") or ():
                jobs = (pipeline or {}).get("jobs")
                if not isinstance(jobs, dict) or (jobs.get("pageInfo") or {}).get("hasNextPage"):
                    return None
                for job in jobs.get("nodes") or ():
                    if str(job.get("status", "")).lower() not in statuses:
                        continue
                    job_id = _gid(job.get("id"))
                    found[job_id] = PendingJob(
                        id=job_id,
                        scope=scope,
                        tags=tuple(str(t) for t in job.get("tags") or ()),
                        created_at=parse_time(job.get("createdAt")) or datetime.now(UTC),
                        pipeline=_gid(pipeline.get("id")),
                        name=str(job.get("name") or ""),
                    )
        return list(found.values())
