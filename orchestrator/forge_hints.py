"""The webhook layer of one forge: hints, kept until a poll that read their scope.

A delivery's queued job becomes a *hint* (demand before any poll lists it); a delivery's
"finished" id marks a job a poll may still list as no longer waiting. Split from
:mod:`orchestrator.forges`; one :class:`HintBook` per forge, owned by its
:class:`~orchestrator.forge_state.ForgeState`, which also prunes it:

* a hint goes when a poll lists its job (the poll's view takes over), when a poll that
  started after it answered other jobs of the same scope but not this one (it read the
  scope), or when the provider says it read every scope it serves since before the hint;
* a "finished" mark lives while a poll still lists the job;
* neither lives longer than ``hint_ttl_s``, nor are there more than ``hint_max`` of
  either (oldest first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from orchestrator.models import Job
from providers.base import PendingJob, WebhookResult


def to_job(forge: str, job: PendingJob) -> Job:
    """A provider's pending job as the planner's :class:`Job` (naive times taken as UTC)."""
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return Job(
        forge=forge,
        id=job.id,
        scope=job.scope,
        tags=frozenset(job.tags),
        created_at=created,
        pipeline=job.pipeline,
        name=job.name,
    )


@dataclasses.dataclass
class HintBook:
    """One forge's webhook hints and "finished" marks (bounded by age and count)."""

    #: job key -> (job, when the hint arrived); insertion order = age order.
    jobs: dict[str, tuple[Job, datetime]] = dataclasses.field(default_factory=dict)
    #: job key -> when a webhook said it no longer waits.
    finished: dict[str, datetime] = dataclasses.field(default_factory=dict)

    def add(self, forge: str, result: WebhookResult, now: datetime) -> None:
        """Remember what a delivery told us (newest last, so age order holds)."""
        for pending in result.jobs:
            job = to_job(forge, pending)
            self.jobs.pop(job.key, None)  # re-insert: newest last
            self.jobs[job.key] = (job, now)
        for job_id in result.finished_job_ids:
            key = f"{forge}:{job_id}"
            self.finished.pop(key, None)
            self.finished[key] = now
            self.jobs.pop(key, None)

    def supersede(
        self, polled: Sequence[Job], started: datetime, read_all_since: datetime | None
    ) -> None:
        """Drop what a successful poll (started at ``started``) evidently read.

        A poll supersedes a hint only where it evidently read the hint's scope: the job is
        in its answer (the poll's view takes over), or the poll started after the hint and
        answered other jobs of that scope but not this one. A provider may skip or serve
        from cache a scope it did not read this time (budget, a refused repo), so "any
        later poll" is not proof; age and count bound what is left. ``read_all_since``:
        the provider read every scope it serves since then (the age of its stalest
        answer), so a hint older than that was read too, listed or not (a job taken and
        finished between two polls was never listed: its hint made a second runner after
        the first one exited).
        """
        keys = {j.key for j in polled}
        read = {j.scope for j in polled}
        self.jobs = {
            k: (job, at)
            for k, (job, at) in self.jobs.items()
            if k not in keys
            and not (at < started and job.scope in read)
            and not (read_all_since is not None and at < read_all_since)
        }
        # A "finished" mark is needed only while a poll still lists the job.
        self.finished = {k: at for k, at in self.finished.items() if k in keys}

    def bound(self, now: datetime, ttl_s: float, max_count: int) -> None:
        """Forget what is older than ``ttl_s``, then the oldest beyond ``max_count``."""
        oldest = now - timedelta(seconds=ttl_s)
        self.jobs = {k: v for k, v in self.jobs.items() if v[1] > oldest}
        self.finished = {k: v for k, v in self.finished.items() if v > oldest}
        for book in (self.jobs, self.finished):
            for key in list(book)[: max(0, len(book) - max_count)]:
                del book[key]

    def demand(self, polled: Sequence[Job]) -> list[Job]:
        """The forge's pending jobs: its last poll's, minus "finished", plus the hints."""
        jobs = {j.key: j for j in polled if j.key not in self.finished}
        for key, (job, _at) in self.jobs.items():
            jobs.setdefault(key, job)
        return list(jobs.values())
