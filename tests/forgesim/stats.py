"""Request counters by class, so tests and benchmarks can show who spends the budget.

Each simulator classifies every recorded request (``classify(method, path)``) into one
of the classes below; ``GET /_sim/stats[?since=S]`` counts them (all requests, or those of
the last ``S`` seconds) with their statuses. The classes follow the priorities of issue
11: job polls first, then registration and deletion, then activity checks, then sweeps.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.forgesim.common import RecordedRequest

JOB_POLL = "job_poll"  # listing pending/queued work (REST lists, GraphQL)
JOB_LOOKUP = "job_lookup"  # one job by id (webhook enrichment)
ACTIVITY = "activity"  # is this runner busy: one runner, or its jobs
REGISTRATION = "registration"  # create a runner, a JIT config or a registration token
DELETION = "deletion"  # delete (or pause before deleting) a runner
SWEEP = "sweep"  # list runners to find orphans
SCOPE = "scope"  # expand groups/orgs, resolve projects/repos
IDENTITY = "identity"  # who am I, rate limit
RUNNER_SIDE = "runner_side"  # the runner containers' own calls (not the daemon's)
OTHER = "other"
CLASSES = (
    JOB_POLL,
    JOB_LOOKUP,
    ACTIVITY,
    REGISTRATION,
    DELETION,
    SWEEP,
    SCOPE,
    IDENTITY,
    RUNNER_SIDE,
    OTHER,
)


def summarise(requests: list[RecordedRequest], since: float | None = None) -> dict[str, Any]:
    """``{"total", "window_seconds", "classes": {class: {"count", "statuses"}}}``."""
    cutoff = None if since is None else time.monotonic() - since
    chosen = [r for r in requests if cutoff is None or r.at >= cutoff]
    classes: dict[str, dict[str, Any]] = {}
    for cls in CLASSES:
        mine = [r for r in chosen if r.cls == cls]
        statuses = Counter(str(r.status) for r in mine)
        classes[cls] = {"count": len(mine), "statuses": dict(sorted(statuses.items()))}
    return {
        "total": len(chosen),
        "window_seconds": since,
        "not_modified": sum(1 for r in chosen if r.status == 304),
        "classes": classes,
    }
