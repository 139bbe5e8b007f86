"""The status page at ``/``: what a person wants from /status, as HTML, from the snapshot.

Pure rendering (no I/O, no clock: ``now`` is an argument), so the web layer serves it
without calling a forge or Docker, like /status. Built with :mod:`orchestrator.markup`
(escaped by construction, one self-contained document, a layout that reads on a phone);
one runner's page is :mod:`orchestrator.runnerpage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from orchestrator.markup import (
    STATE_CLASS,
    Child,
    Html,
    ago,
    chips,
    concat,
    document,
    event_table,
    more_note,
    row_table,
    runner_link,
    tag,
    time_ago,
)
from orchestrator.models import Runner, RunnerState, WaitingJob, WaitReason
from orchestrator.snapshot import ForgeStatus, Snapshot
from orchestrator.state import Transition

#: Rows shown per list; the rest is counted ("and 1,234 more"), never rendered.
MAX_ROWS = 100
#: Latest lifecycle events on the main page.
LATEST_EVENTS = 20


# --- words -------------------------------------------------------------------------------


def reason_sentence(reason: str, pool: str | None) -> str:
    """Why a job still waits (a WaitReason value), in a sentence a person reads."""
    pool = pool or "?"
    words = {
        WaitReason.RUNNER_STARTING.value: f"a runner is starting for it in pool {pool}",
        WaitReason.NO_MATCHING_POOL.value: "no pool has all of its tags",
        WaitReason.POOL_AT_MAX.value: f"pool {pool} is at its maximum number of runners",
        WaitReason.GLOBAL_MAX.value: "the global maximum number of runners (MAX_RUNNERS) is "
        "reached",
        WaitReason.FORGE_PAUSED.value: "polling this forge is paused",
        WaitReason.POOL_UNAVAILABLE.value: f"pool {pool} cannot start runners now",
    }
    return words.get(reason, reason)


def reason_words(waiting: WaitingJob) -> str:
    """Why a job still waits, in a sentence a person reads (the planner's detail apart)."""
    return reason_sentence(waiting.reason.value, waiting.pool)


# --- the main page ---------------------------------------------------------------------------


def _header(snap: Snapshot, now: datetime) -> Html:
    result_class = {"ok": "ok", "degraded": "warn", "error": "bad"}.get(snap.result, "mut")
    parts: list[Child] = [
        tag("h1", f"runner-orchestrator {snap.instance_id}".strip()),
        tag(
            "p",
            "last reconcile: ",
            tag("b", snap.result, class_=result_class),
            " ",
            time_ago(snap.finished_at, now),
            f" ({snap.duration_s:.2f} s, #{snap.reconciles})" if snap.reconciles else "",
        ),
    ]
    if snap.error:
        parts.append(tag("p", snap.error, class_="bad"))
    return concat(parts)


def _forges(snap: Snapshot, now: datetime) -> Html:
    rows: list[list[Child]] = []
    for f in snap.forges:
        if f.paused:
            retry = f" (retry {ago(now, f.retry_at)} from now)" if f.retry_at else ""
            health: Html = tag("span", f"paused: {f.error}{retry}", class_="bad")
        else:
            health = tag("span", "ok", class_="ok")
        rate = "-" if f.rate_limit_remaining is None else f"{f.rate_limit_remaining:,}"
        rows.append(
            [
                tag("b", f.name),
                f.kind,
                health,
                f.poll_mode or "-",
                rate,
                time_ago(f.last_ok_at, now),
                f.pending_jobs,
                _scope_notes(f) or f.note or None,
            ]
        )
    headers = [
        "forge",
        "kind",
        "health",
        "polling",
        "rate limit left",
        "last good poll",
        "jobs",
        "note",
    ]
    return tag("section", tag("h2", "Forges"), row_table(headers, rows, "no forge configured"))


def _scope_notes(f: ForgeStatus) -> Html | None:
    """The forge's note plus refused and capped scopes (named up to what /status names,
    the rest counted)."""
    parts: list[Child] = [tag("div", f.note)] if f.note else []
    if f.scope_error_count:
        named = "; ".join(f"{scope}: {reason}" for scope, reason in f.scope_errors)
        more = f.scope_error_count - len(f.scope_errors)
        extra = f" (and {more:,} more)" if more > 0 else ""
        text = f"{f.scope_error_count:,} skipped (refused): {named}{extra}"
        parts.append(tag("div", text, class_="bad"))
    if f.jobs_capped_count:
        named = ", ".join(f"{scope} ({jobs:,} read)" for scope, jobs in f.jobs_capped)
        more = f.jobs_capped_count - len(f.jobs_capped)
        extra = f" (and {more:,} more)" if more > 0 else ""
        parts.append(tag("div", f"backlog capped: {named}{extra}"))
    return concat(parts) if parts else None


def _pools(snap: Snapshot) -> Html:
    rows: list[list[Child]] = []
    for p in snap.pools:
        idle = p.runners.get(RunnerState.IDLE.value, 0)
        busy = p.runners.get(RunnerState.BUSY.value, 0)
        unavailable = tag("span", p.unavailable, class_="bad") if p.unavailable else "-"
        rows.append(
            [
                tag("b", p.name),
                chips(p.labels) or tag("span", "(untagged)", class_="mut"),
                p.platform,
                f"{p.active} / {p.max_runners}",
                f"{busy} busy, {idle} idle (keep {p.min_idle} warm)",
                p.pending_jobs,
                unavailable,
            ]
        )
    headers = ["pool", "labels", "platform", "runners / max", "warm", "jobs", "unavailable"]
    return tag("section", tag("h2", "Pools"), row_table(headers, rows, "no pool configured"))


def _waiting(snap: Snapshot, now: datetime) -> Html:
    shown = snap.waiting[:MAX_ROWS]
    rows = [
        [
            tag("code", w.job.key),
            w.job.name or None,
            w.job.scope,
            chips(sorted(w.job.tags)) or tag("span", "(untagged)", class_="mut"),
            ago(w.job.created_at, now),
            [
                tag("span", reason_words(w), class_=_reason_class(w.reason)),
                [tag("br"), tag("small", w.detail, class_="mut")] if w.detail else None,
            ],
        ]
        for w in shown
    ]
    headers = ["job", "name", "where", "tags", "waiting", "why it waits"]
    title = f"Waiting jobs ({len(snap.waiting):,})"
    return tag(
        "section",
        tag("h2", title),
        row_table(headers, rows, "no job is waiting"),
        more_note(len(snap.waiting), len(shown), "jobs"),
        id="waiting",
    )


def _reason_class(reason: WaitReason) -> str:
    if reason is WaitReason.RUNNER_STARTING:
        return "ok"
    if reason in {WaitReason.POOL_AT_MAX, WaitReason.GLOBAL_MAX}:
        return "warn"
    return "bad"


def _runner_rows(runners: Sequence[Runner], now: datetime) -> list[list[Child]]:
    return [
        [
            runner_link(r.id, r.name),
            r.pool,
            tag("span", r.state.value, class_=STATE_CLASS.get(r.state, "")),
            ago(r.since, now),
            tag("code", r.current_job) if r.current_job else "-",
            r.host or "-",
            ago(r.created_at, now),
            tag("span", r.error, class_="bad") if r.error else None,
        ]
        for r in runners
    ]


def _runners(snap: Snapshot, now: datetime) -> Html:
    active = [r for r in snap.runners if r.state is not RunnerState.REMOVED]
    removed = [r for r in snap.runners if r.state is RunnerState.REMOVED]
    listed = (active + removed[:10])[:MAX_ROWS]
    headers = ["runner", "pool", "state", "since", "job", "host", "age", "error"]
    return tag(
        "section",
        tag("h2", f"Runners ({len(active):,} active)"),
        row_table(headers, _runner_rows(listed, now), "no runner"),
        more_note(len(active), min(len(active), MAX_ROWS), "runners"),
        id="runners",
    )


def _hosts(snap: Snapshot) -> Html:
    rows = [
        [
            tag("b", h.name),
            tag("span", "ok", class_="ok")
            if h.ok
            else tag("span", h.error or "down", class_="bad"),
            h.arch,
            f"{h.containers} / {h.max_containers}",
            h.gpus or "-",
        ]
        for h in snap.hosts
    ]
    headers = ["Docker host", "health", "arch", "containers / max", "GPUs"]
    return tag("section", tag("h2", "Docker hosts"), row_table(headers, rows, "no host known yet"))


def status_live(snap: Snapshot, events: Sequence[Transition], now: datetime) -> Html:
    """The part of ``/`` that refreshes itself: everything but the page frame."""
    return Html(
        "".join(
            [
                _header(snap, now),
                _waiting(snap, now),
                _runners(snap, now),
                _pools(snap),
                _forges(snap, now),
                _hosts(snap),
                tag(
                    "section",
                    tag("h2", "Latest events"),
                    event_table(events[:LATEST_EVENTS], now, with_runner=True),
                    tag(
                        "p",
                        "More: ",
                        tag("a", "/api/v1/events", href="/api/v1/events"),
                        " · ",
                        tag("a", "/status", href="/status"),
                        " · ",
                        tag("a", "/metrics", href="/metrics"),
                        " · ",
                        tag("a", "OpenAPI", href="/api/v1/openapi.json"),
                        class_="mut",
                    ),
                ),
            ]
        )
    )


def status_page(snap: Snapshot, events: Sequence[Transition], now: datetime) -> Html:
    title = f"runners {snap.instance_id}".strip()
    return document(title, "/?part=live", status_live(snap, events, now))
