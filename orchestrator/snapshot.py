"""The in-memory picture the HTTP layer and the metrics serve.

Built at the end of every reconcile (and after runner changes); read handlers only ever
read it, so ``/status``, ``/runners`` and ``/metrics`` never call a forge or Docker.
Nothing secret is ever put in here: runner credentials live only in the runtime call.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.models import Plan, PoolSpec, Runner, WaitingJob
from orchestrator.runtime import HostStatus


@dataclasses.dataclass(frozen=True)
class PoolStatus:
    name: str
    forge: str
    platform: str
    labels: tuple[str, ...]
    max_runners: int
    min_idle: int
    pending_jobs: int
    runners: dict[str, int]
    active: int
    unavailable: str = ""


#: Refused or capped scopes named per forge in /status and on the page (the rest counted).
SCOPES_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class ForgeStatus:
    name: str
    kind: str
    paused: bool
    error: str
    last_ok_at: datetime | None
    pending_jobs: int
    poll_interval_s: float
    rate_limit_remaining: int | None = None
    note: str = ""
    retry_at: datetime | None = None
    stale: str = ""  # why its view is too old to trust ('' = fresh)
    #: Scopes the forge refused (403/404) and why, at most SCOPES_SHOWN of them; the
    #: counts cover all (a group of thousands of refused projects must not bloat /status).
    scope_errors: tuple[tuple[str, str], ...] = ()
    scope_error_count: int = 0
    #: Scopes whose backlog was read only up to MAX_JOBS_PER_SCOPE (scope -> jobs read).
    jobs_capped: tuple[tuple[str, int], ...] = ()
    jobs_capped_count: int = 0
    poll_mode: str = ""  # how often it is polled and why (issue 15)


@dataclasses.dataclass(frozen=True)
class OrphanedRegistration:
    """A runner whose container is gone (or going) but whose forge registration could not
    be deleted yet: retried with backoff, then by the forge sweep."""

    runner: str
    name: str
    pool: str
    forge: str
    forge_runner_id: str
    reason: str
    attempts: int
    retry_at: datetime | None  # None: left to the next forge sweep


@dataclasses.dataclass(frozen=True)
class RunResult:
    """How the reconcile that refreshes a snapshot went."""

    started_at: datetime
    duration_s: float
    result: str  # ok | degraded | error
    error: str = ""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclasses.dataclass(frozen=True)
class Snapshot:
    instance_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: str = "never"  # never | ok | degraded | error
    error: str = ""
    duration_s: float = 0.0
    reconciles: int = 0
    pools: tuple[PoolStatus, ...] = ()
    forges: tuple[ForgeStatus, ...] = ()
    hosts: tuple[HostStatus, ...] = ()
    waiting: tuple[WaitingJob, ...] = ()
    runners: tuple[Runner, ...] = ()
    unmatched_jobs: int = 0
    last_ok_at: datetime | None = None
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    orphaned: tuple[OrphanedRegistration, ...] = ()

    def waiting_by_reason(self) -> dict[str, int]:
        return dict(Counter(w.reason.value for w in self.waiting))

    def oldest_waiting_by_reason(self) -> dict[str, float]:
        if self.finished_at is None:
            return {}
        oldest: dict[str, float] = {}
        for w in self.waiting:
            age = max(0.0, (self.finished_at - w.job.created_at).total_seconds())
            oldest[w.reason.value] = max(oldest.get(w.reason.value, 0.0), age)
        return oldest

    # --- JSON views -----------------------------------------------------------------------

    def status_json(self, max_waiting: int | None = None) -> dict[str, Any]:
        """The /status body; at most ``max_waiting`` waiting jobs (all counted in the total)."""
        return {
            "instance": self.instance_id,
            "reconcile": {
                "result": self.result,
                "error": self.error,
                "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at),
                "last_ok_at": _iso(self.last_ok_at),
                "duration_s": round(self.duration_s, 4),
                "count": self.reconciles,
                "last_plan": self.plan,
            },
            "forges": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "paused": f.paused,
                    "error": f.error,
                    "last_ok_at": _iso(f.last_ok_at),
                    "retry_at": _iso(f.retry_at),
                    "pending_jobs": f.pending_jobs,
                    "poll_interval_s": f.poll_interval_s,
                    "rate_limit_remaining": f.rate_limit_remaining,
                    "note": f.note,
                    "stale": f.stale,
                    "poll_mode": f.poll_mode,
                    "scope_errors": dict(f.scope_errors),
                    "scope_error_count": f.scope_error_count,
                    "jobs_capped": dict(f.jobs_capped),
                    "jobs_capped_count": f.jobs_capped_count,
                }
                for f in self.forges
            ],
            "pools": [
                {
                    "name": p.name,
                    "forge": p.forge,
                    "platform": p.platform,
                    "labels": list(p.labels),
                    "max_runners": p.max_runners,
                    "min_idle": p.min_idle,
                    "pending_jobs": p.pending_jobs,
                    "runners": p.runners,
                    "active": p.active,
                    "unavailable": p.unavailable,
                }
                for p in self.pools
            ],
            "hosts": [dataclasses.asdict(h) for h in self.hosts],
            "waiting_jobs": [
                {
                    "job": w.job.key,
                    "forge": w.job.forge,
                    "id": w.job.id,
                    "scope": w.job.scope,
                    "name": w.job.name,
                    "tags": sorted(w.job.tags),
                    "created_at": _iso(w.job.created_at),
                    "pool": w.pool,
                    "reason": w.reason.value,
                    "detail": w.detail,
                }
                for w in self.waiting[:max_waiting]
            ],
            "waiting_jobs_total": len(self.waiting),
            "waiting_by_reason": self.waiting_by_reason(),
            "orphaned_registrations": [
                {
                    "runner": o.runner,
                    "name": o.name,
                    "pool": o.pool,
                    "forge": o.forge,
                    "forge_runner_id": o.forge_runner_id,
                    "reason": o.reason,
                    "attempts": o.attempts,
                    "retry_at": _iso(o.retry_at),
                }
                for o in self.orphaned
            ],
        }

    def runners_json(self) -> list[dict[str, Any]]:
        return [runner_json(r) for r in self.runners]


def runner_json(r: Runner) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "pool": r.pool,
        "forge": r.forge,
        "state": r.state.value,
        "since": _iso(r.since),
        "created_at": _iso(r.created_at),
        "platform": r.platform,
        "scope": r.scope,
        "host": r.host,
        "container_id": r.container_id,
        "forge_runner_id": r.forge_runner_id,
        "current_job": r.current_job,
        "last_job_ended_at": _iso(r.last_job_ended_at),
        "exit_code": r.exit_code,
        "error": r.error,
    }


def build_snapshot(
    previous: Snapshot,
    *,
    now: datetime,
    pools: Sequence[PoolSpec],
    active: Sequence[Runner],
    recent: Sequence[Runner],
    plan: Plan,
    unavailable: Mapping[str, str],
    forges: Sequence[ForgeStatus],
    hosts: Sequence[HostStatus],
    orphaned: Sequence[OrphanedRegistration] = (),
    run: RunResult | None = None,
) -> Snapshot:
    """The next snapshot (pure): journal rows, forge views, the plan and the runtime's hosts.

    ``run`` is set when a reconcile just finished; otherwise (a runner changed between
    reconciles) the reconcile fields are carried over from ``previous``.
    """
    pending_by_pool: Counter[str] = Counter()
    unmatched = 0
    for waiting in plan.waiting:
        if waiting.pool is None:
            unmatched += 1
        else:
            pending_by_pool[waiting.pool] += 1
    pool_rows = []
    for spec in pools:
        mine = [r for r in active if r.pool == spec.name]
        pool_rows.append(
            PoolStatus(
                name=spec.name,
                forge=spec.forge,
                platform=spec.platform,
                labels=tuple(sorted(spec.labels)),
                max_runners=spec.max_runners,
                min_idle=spec.min_idle,
                pending_jobs=pending_by_pool[spec.name],
                runners=dict(Counter(r.state.value for r in mine)),
                active=len(mine),
                unavailable=unavailable.get(spec.name, ""),
            )
        )
    forge_rows = tuple(
        dataclasses.replace(f, pending_jobs=sum(1 for w in plan.waiting if w.job.forge == f.name))
        for f in forges
    )
    return Snapshot(
        instance_id=previous.instance_id,
        started_at=run.started_at if run else previous.started_at,
        finished_at=now if run else previous.finished_at,
        result=run.result if run else previous.result,
        error=run.error if run else previous.error,
        duration_s=run.duration_s if run else previous.duration_s,
        reconciles=previous.reconciles + (1 if run else 0),
        pools=tuple(pool_rows),
        forges=forge_rows,
        hosts=tuple(hosts),
        waiting=plan.waiting,
        runners=tuple(recent),
        unmatched_jobs=unmatched,
        last_ok_at=now if run and run.result in {"ok", "degraded"} else previous.last_ok_at,
        plan={
            "create": [dataclasses.asdict(c) for c in plan.create],
            "retire": [dataclasses.asdict(r) for r in plan.retire],
        },
        orphaned=tuple(orphaned),
    )
