"""Prometheus metrics on the daemon's own registry (never the global one).

Namespace ``runner_orchestrator``. State gauges (runners by pool/state, pending and
waiting jobs, forge and host health) are read from the last reconcile snapshot at scrape
time by :class:`SnapshotCollector`, so a scrape never calls a forge or Docker. Counters
and histograms are updated where the events happen. No runner id or job id is ever a
label value: cardinality stays bounded by pools, forges, hosts and reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from orchestrator.models import RunnerState, WaitReason

if TYPE_CHECKING:
    from orchestrator.snapshot import Snapshot
    from orchestrator.state import Transition

NS = "runner_orchestrator"


class SnapshotCollector(Collector):
    """Gauges computed from the latest snapshot when Prometheus scrapes."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        runners = GaugeMetricFamily(
            f"{NS}_runners", "Runners by pool and lifecycle state.", labels=["pool", "state"]
        )
        for pool in snap.pools:
            for state in RunnerState:
                if state is RunnerState.REMOVED:
                    continue
                runners.add_metric([pool.name, state.value], pool.runners.get(state.value, 0))
        yield runners

        pending = GaugeMetricFamily(
            f"{NS}_pending_jobs",
            'Jobs waiting at the forge, by the pool they map to (pool="" when none).',
            labels=["pool"],
        )
        for pool in snap.pools:
            pending.add_metric([pool.name], pool.pending_jobs)
        pending.add_metric([""], snap.unmatched_jobs)
        yield pending

        waiting = GaugeMetricFamily(
            f"{NS}_waiting_jobs", "Pending jobs by why they have no runner yet.", labels=["reason"]
        )
        counts = snap.waiting_by_reason()
        for wait_reason in WaitReason:
            waiting.add_metric([wait_reason.value], counts.get(wait_reason.value, 0))
        yield waiting

        oldest = GaugeMetricFamily(
            f"{NS}_oldest_waiting_job_seconds",
            "Age of the oldest pending job, by why it waits.",
            labels=["reason"],
        )
        for reason, age in snap.oldest_waiting_by_reason().items():
            oldest.add_metric([reason], age)
        yield oldest

        at_max = GaugeMetricFamily(
            f"{NS}_pool_at_max", "1 when the pool has as many runners as its max.", labels=["pool"]
        )
        limit = GaugeMetricFamily(f"{NS}_pool_max_runners", "Configured max.", labels=["pool"])
        for pool in snap.pools:
            at_max.add_metric([pool.name], 1.0 if pool.active >= pool.max_runners else 0.0)
            limit.add_metric([pool.name], pool.max_runners)
        yield at_max
        yield limit

        forge_up = GaugeMetricFamily(
            f"{NS}_forge_up",
            "1 when the forge view is current (not paused or stale).",
            labels=["forge"],
        )
        remaining = GaugeMetricFamily(
            f"{NS}_forge_rate_limit_remaining",
            "Requests left in the forge's rate-limit window (when the forge says).",
            labels=["forge"],
        )
        interval = GaugeMetricFamily(
            f"{NS}_forge_poll_interval_seconds",
            "Effective poll interval per forge (stretched when the rate limit runs low).",
            labels=["forge"],
        )
        scope_errors = GaugeMetricFamily(
            f"{NS}_forge_scope_errors",
            "Projects/repositories the forge refused (403/404), skipped while the rest is served.",
            labels=["forge"],
        )
        capped = GaugeMetricFamily(
            f"{NS}_forge_jobs_capped",
            "Projects/repositories whose waiting jobs were read only up to MAX_JOBS_PER_SCOPE.",
            labels=["forge"],
        )
        for forge in snap.forges:
            scope_errors.add_metric([forge.name], forge.scope_error_count)
            capped.add_metric([forge.name], forge.jobs_capped_count)
            forge_up.add_metric([forge.name], 0.0 if forge.paused or forge.stale else 1.0)
            if forge.rate_limit_remaining is not None:
                remaining.add_metric([forge.name], forge.rate_limit_remaining)
            interval.add_metric([forge.name], forge.poll_interval_s)
        yield forge_up
        yield remaining
        yield interval
        yield scope_errors
        yield capped

        host_up = GaugeMetricFamily(
            f"{NS}_docker_host_up", "1 when the Docker host answers.", labels=["host"]
        )
        for host in snap.hosts:
            host_up.add_metric([host.name], 1.0 if host.ok else 0.0)
        yield host_up

        last = GaugeMetricFamily(
            f"{NS}_last_reconcile_timestamp_seconds", "Unix time the last reconcile finished."
        )
        last.add_metric([], snap.finished_at.timestamp() if snap.finished_at else 0.0)
        yield last


class Metrics:
    """Every metric the daemon exports, on one private registry."""

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_duration = Histogram(
            f"{NS}_reconcile_duration_seconds",
            "Time one reconcile (observe, plan, apply) took.",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.reconciles = Counter(
            f"{NS}_reconcile_runs", "Reconciles by result (ok, error).", ["result"], registry=r
        )
        self.pickup_latency = Histogram(
            f"{NS}_job_pickup_latency_seconds",
            "Job queued at the forge -> its runner container started.",
            ["pool"],
            registry=r,
            buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 600),
        )
        self.spawned = Counter(
            f"{NS}_runners_spawned", "Runner containers started.", ["pool"], registry=r
        )
        self.retired = Counter(
            f"{NS}_runners_retired", "Runners retired, by reason.", ["pool", "reason"], registry=r
        )
        self.failures = Counter(
            f"{NS}_runner_failures",
            "Runner failures by stage (register, start, early_exit, unregister, remove, exited).",
            ["pool", "stage"],
            registry=r,
        )
        self.forge_requests = Counter(
            f"{NS}_forge_requests",
            "HTTP requests to forges by endpoint and status (0 = no answer).",
            ["forge", "endpoint", "status"],
            registry=r,
        )
        self.forge_errors = Counter(
            f"{NS}_forge_errors",
            "Forge calls that failed, by kind.",
            ["forge", "kind"],
            registry=r,
        )
        self.webhooks = Counter(
            f"{NS}_webhooks",
            "Webhook deliveries by forge and result.",
            ["forge", "result"],
            registry=r,
        )
        self.orphans = Counter(
            f"{NS}_orphans_removed",
            "Leaked objects found and removed (container without runner row, forge runner "
            "without container, row without container).",
            ["kind"],
            registry=r,
        )
        self.transitions = Counter(
            f"{NS}_runner_transitions",
            "Runner lifecycle transitions (from_state is empty for a created runner).",
            ["pool", "from_state", "to_state"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{NS}_management_auth_failures",
            "Management requests refused for a missing or wrong bearer token.",
            registry=r,
        )
        self.http_rejected = Counter(
            f"{NS}_http_rejected",
            "HTTP connections or requests refused before a handler ran, by reason "
            "(connection_cap: oldest idle connection closed for a new one; host: Host "
            "header not allowed).",
            ["reason"],
            registry=r,
        )
        if snapshot is not None:
            r.register(SnapshotCollector(snapshot))

    def transition(self, event: Transition) -> None:
        """The journal's :data:`~orchestrator.state.TransitionListener`."""
        self.transitions.labels(event.pool, event.from_state or "", event.to_state).inc()

    def observe_request(self, forge: str, endpoint: str, status: int) -> None:
        """The :data:`providers.base.RequestObserver` handed to every provider."""
        self.forge_requests.labels(forge, endpoint, str(status)).inc()

    def exposition(self) -> bytes:
        """The text exposition format (what ``promtool check metrics`` wants)."""
        return generate_latest(self.registry)
