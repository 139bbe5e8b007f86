"""The subset of GitLab's GraphQL schema the simulator serves (names from ``app/graphql``).

Each type maps its field names to a :class:`FieldDef`: the type it returns (``None`` for
scalars and scalar lists), the arguments GitLab's resolver declares, and whether it is a
resolver/connection field (for the complexity rule of ``Types::BaseField``).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from tests.forgesim.gitlab.model import Job

PAGING = frozenset({"first", "after", "last", "before"})


@dataclasses.dataclass(frozen=True)
class FieldDef:
    type: str | None = None
    args: frozenset[str] = frozenset()
    resolver: bool = False
    connection: bool = False


def _conn(type_name: str, *args: str) -> FieldDef:
    return FieldDef(type_name, PAGING | frozenset(args), resolver=True, connection=True)


LEAF = FieldDef()

TYPES: dict[str, dict[str, FieldDef]] = {
    "Query": {
        # Resolvers::Ci::AllJobsResolver (admin only)
        "jobs": _conn("CiJobConnection", "statuses", "runnerTypes", "compatibleRunnerId"),
        # Resolvers::ProjectsResolver + ProjectSearchArguments
        "projects": _conn("ProjectConnection", "ids", "fullPaths", "membership", "search", "sort"),
        "project": FieldDef("Project", frozenset({"fullPath"}), resolver=True),
        "currentUser": FieldDef("UserCore"),
    },
    "UserCore": {"id": LEAF, "username": LEAF, "name": LEAF},
    "Project": {
        "id": LEAF,
        "fullPath": LEAF,
        "name": LEAF,
        # Resolvers::ProjectJobsResolver (FieldCallCount limit 1)
        "jobs": _conn("CiJobConnection", "statuses", "withArtifacts", "name"),
        # Resolvers::ProjectPipelinesResolver + ResolvesPipelines
        "pipelines": _conn(
            "PipelineConnection",
            "status",
            "scope",
            "ref",
            "sha",
            "source",
            "updatedAfter",
            "updatedBefore",
            "username",
        ),
    },
    "Pipeline": {
        "id": LEAF,
        "iid": LEAF,
        "status": LEAF,
        "createdAt": LEAF,
        "project": FieldDef("Project"),
        # Resolvers::Ci::JobsResolver
        "jobs": _conn(
            "CiJobConnection", "statuses", "retried", "securityReportTypes", "whenExecuted"
        ),
    },
    "CiJob": {
        "id": LEAF,
        "name": LEAF,
        "status": LEAF,
        "tags": LEAF,
        "createdAt": LEAF,
        "queuedAt": LEAF,
        "startedAt": LEAF,
        "pipeline": FieldDef("Pipeline"),
        "project": FieldDef("Project"),
    },
    "PageInfo": {
        "hasNextPage": LEAF,
        "hasPreviousPage": LEAF,
        "startCursor": LEAF,
        "endCursor": LEAF,
    },
}

for _node in ("CiJob", "Project", "Pipeline"):
    TYPES[f"{_node}Connection"] = {
        "nodes": FieldDef(_node),
        "edges": FieldDef(f"{_node}Edge"),
        "pageInfo": FieldDef("PageInfo"),
        "count": LEAF,
    }
    TYPES[f"{_node}Edge"] = {"cursor": LEAF, "node": FieldDef(_node)}


@dataclasses.dataclass
class Pipeline:
    id: int
    project_id: int
    created_at: datetime
    jobs: list[Job]

    @property
    def status(self) -> str:
        """The pipeline's composite status (``Gitlab::Ci::Status::Composite``, simplified:
        the most active of its jobs' statuses)."""
        present = {j.status for j in self.jobs}
        order = (
            "running",
            "canceling",
            "pending",
            "preparing",
            "waiting_for_resource",
            "waiting_for_callback",
            "created",
            "scheduled",
            "manual",
            "failed",
            "canceled",
            "success",
            "skipped",
        )
        return next((s for s in order if s in present), "created")


def pipelines_of(jobs: list[Job]) -> list[Pipeline]:
    """The pipelines of ``jobs``, newest first."""
    grouped: dict[int, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.pipeline_id, []).append(job)
    return [
        Pipeline(pid, members[0].project_id, min(j.created_at for j in members), members)
        for pid, members in sorted(grouped.items(), reverse=True)
    ]
