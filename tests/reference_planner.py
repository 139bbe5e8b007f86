"""The planner as it matched jobs before :class:`orchestrator.labels.PoolMatcher`.

:func:`orchestrator.labels.match_pool` is the readable definition of which pool serves a
job; the planner now uses a precomputed, memoised matcher instead. This module plugs the
definition back in, one call per job, so that a property test can hold the fast path
equal to it and ``scripts/bench.py`` can time the old algorithm beside the new one in the
same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest import mock

from orchestrator import planner
from orchestrator.labels import Match, job_platform, match_pool, why_unmatched
from orchestrator.models import Job, Plan, PoolSpec


class PerJobMatcher:
    """Same interface as :class:`~orchestrator.labels.PoolMatcher`; recomputes per job."""

    def __init__(self, pools: Sequence[PoolSpec]) -> None:
        self._pools = tuple(pools)

    def match(self, job: Job) -> Match:
        pool = match_pool(job, self._pools)
        if pool is None:
            return Match(None, why=why_unmatched(job, self._pools))
        return Match(pool, job_platform(job, pool))


def reference_plan(**kwargs: Any) -> Plan:
    """:func:`orchestrator.planner.compute_plan` with per-job matching (same arguments)."""
    with mock.patch.object(planner, "PoolMatcher", PerJobMatcher):
        return planner.compute_plan(**kwargs)
