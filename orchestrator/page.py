"""The status page: what a person wants from /status, as HTML, from the in-memory snapshot.

Pure rendering (no I/O, no clock: ``now`` is an argument), so web.py serves it without
calling a forge or Docker, like /status. One self-contained document: no external
assets (homelabs are often offline), no build step, a small inline script that refreshes
the live part every few seconds by fetching ``?part=live`` (and a ``<noscript>`` meta
refresh without JavaScript), a layout that reads on a phone.

Every string from a forge, the config or the journal (job names, tags, labels, errors)
can hold any text, so markup is built with :func:`tag`, which escapes every child and
attribute value unless it is already :class:`Html` made by this module. There is no other
way to put text into a page. The Content-Security-Policy (:data:`CSP`) allows only this
module's own script and style (by hash) as a second line of defence.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeAlias
from urllib.parse import quote

from orchestrator.events import event_word
from orchestrator.models import Runner, RunnerState, WaitingJob, WaitReason
from orchestrator.snapshot import ForgeStatus, Snapshot
from orchestrator.state import Transition

#: Seconds between refreshes of the live part of a page.
REFRESH_S = 5
#: Rows shown per list; the rest is counted ("and 1,234 more"), never rendered.
MAX_ROWS = 100
#: Latest lifecycle events on the main page.
LATEST_EVENTS = 20


class Html(str):
    """Markup that is safe to emit as is: only :func:`tag` and this module make it."""

    __slots__ = ()


Child: TypeAlias = "Html | str | int | float | Iterable[Child] | None"


def esc(value: object) -> Html:
    """``value`` as text (quotes too, so it is safe inside attribute values)."""
    return Html(html.escape(str(value), quote=True))


def _children(children: Iterable[Child]) -> Iterable[str]:
    for child in children:
        if child is None:
            continue
        if isinstance(child, Html):
            yield child
        elif isinstance(child, str | int | float):
            yield esc(child)
        else:
            yield from _children(child)


def tag(name: str, /, *children: Child, **attrs: str | None) -> Html:
    """``<name attrs>children</name>``; every child and attribute value escaped.

    ``class_`` gives ``class``; underscores in other names become dashes (``data_src``).
    """
    parts = [name]
    for key, value in attrs.items():
        if value is None:
            continue
        attr = "class" if key == "class_" else key.replace("_", "-")
        parts.append(f'{attr}="{esc(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if name in {"meta", "input", "br"}:
        return Html(opening)
    return Html(opening + "".join(_children(children)) + f"</{name}>")


_STYLE = """
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--mut:#5b6470;--line:#d6dae0;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--chip:#eef1f4}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--mut:#9aa4af;
--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--chip:#21262d}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:.75rem;font:15px/1.4 system-ui,sans-serif;
color:var(--fg);background:var(--bg)}
h1{font-size:1.25rem;margin:.25rem 0}h2{font-size:1.05rem;margin:1.25rem 0 .4rem}
.mut{color:var(--mut)}.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{font-weight:600;white-space:nowrap}
td.n{white-space:nowrap}
.chip{display:inline-block;background:var(--chip);border-radius:.6rem;padding:0 .45rem;
margin:0 .2rem .15rem 0;font-size:.85em;white-space:nowrap}
code,pre{font:13px/1.35 ui-monospace,monospace}
pre{white-space:pre-wrap;overflow-wrap:anywhere;border:1px solid var(--line);padding:.5rem}
a{color:inherit}
input{font:inherit;max-width:100%}
@media (max-width:40rem){body{font-size:14px}
table.rows,table.rows tbody,table.rows tr,table.rows td{display:block}
table.rows thead{display:none}
table.rows tr{border-bottom:1px solid var(--line);padding:.3rem 0}
table.rows td{border:0;padding:.1rem .2rem}
table.rows td:empty{display:none}
table.rows td[data-label]::before{content:attr(data-label) ": ";color:var(--mut)}}
"""

_SCRIPT = """
(function () {
  var live = document.getElementById("live");
  var stamp = document.getElementById("refreshed");
  function tick() {
    fetch(live.getAttribute("data-src"), {cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (text) {
        live.innerHTML = text;
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        stamp.className = "mut";
      })
      .catch(function () { stamp.textContent = "daemon not answering"; stamp.className = "bad"; })
      .then(function () { setTimeout(tick, REFRESH_MS); });
  }
  if (live && live.getAttribute("data-src")) { setTimeout(tick, REFRESH_MS); }
  var form = document.getElementById("logs-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = document.getElementById("logs");
      var token = document.getElementById("token").value;
      fetch(form.getAttribute("data-src"), {headers: {Authorization: "Bearer " + token}})
        .then(function (r) {
          return r.text().then(function (t) {
            if (!r.ok) { try { t = JSON.parse(t).error; } catch (e) {} t = r.status + ": " + t; }
            out.textContent = t;
          });
        })
        .catch(function () { out.textContent = "daemon not answering"; });
    });
  }
})();
""".replace("REFRESH_MS", str(REFRESH_S * 1000))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: Only this module's own inline script and style may run; fetches go to this daemon.
CSP = (
    f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def document(title: str, live_src: str | None, live: Html, extra: Html | None = None) -> Html:
    """A whole page: head, the live part (refreshed from ``live_src``) and ``extra``."""
    refresh = f'<noscript><meta http-equiv="refresh" content="{REFRESH_S * 2}"></noscript>'
    head = tag(
        "head",
        tag("meta", charset="utf-8"),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        Html(refresh if live_src else ""),
        tag("title", title),
        Html(f"<style>{_STYLE}</style>"),
    )
    body = tag(
        "body",
        tag("p", tag("span", "", id="refreshed", class_="mut"), class_="mut"),
        tag("div", live, id="live", data_src=live_src),
        extra,
        Html(f"<script>{_SCRIPT}</script>"),
    )
    return Html("<!DOCTYPE html>\n" + tag("html", head, body, lang="en"))


# --- words -------------------------------------------------------------------------------


def ago(when: datetime | None, now: datetime) -> str:
    """``when`` as a short age: ``12 s``, ``4 min``, ``3 h``, ``2 d`` (``-`` if unknown)."""
    if when is None:
        return "-"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _when(value: datetime | None, now: datetime) -> Html:
    if value is None:
        return tag("span", "never", class_="mut")
    return tag("span", f"{ago(value, now)} ago", title=value.isoformat())


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


_STATE_CLASS = {
    RunnerState.BUSY: "ok",
    RunnerState.IDLE: "",
    RunnerState.FAILED: "bad",
    RunnerState.DRAINING: "warn",
    RunnerState.REMOVED: "mut",
}


def _chips(values: Iterable[str]) -> list[Html]:
    return [tag("span", v, class_="chip") for v in values]


def _table(headers: Sequence[str], rows: Sequence[Sequence[Child]], empty: str) -> Html:
    if not rows:
        return tag("p", empty, class_="mut")
    head = tag("tr", [tag("th", h) for h in headers])
    body = [
        tag("tr", [tag("td", cell, data_label=h) for h, cell in zip(headers, row, strict=True)])
        for row in rows
    ]
    table = tag("table", tag("thead", head), tag("tbody", body), class_="rows")
    return tag("div", table, class_="scroll")


def _more(total: int, shown: int, what: str) -> Html:
    if total <= shown:
        return Html("")
    return tag("p", f"… and {total - shown:,} more {what} (not shown)", class_="mut")


def runner_path(runner_id: str) -> str:
    return "/runners/" + quote(runner_id, safe="")


def _runner_link(runner_id: str, text: str | None = None) -> Html:
    return tag("a", text or runner_id, href=runner_path(runner_id))


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
            _when(snap.finished_at, now),
            f" ({snap.duration_s:.2f} s, #{snap.reconciles})" if snap.reconciles else "",
        ),
    ]
    if snap.error:
        parts.append(tag("p", snap.error, class_="bad"))
    return Html("".join(_children(parts)))


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
                _when(f.last_ok_at, now),
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
    return tag("section", tag("h2", "Forges"), _table(headers, rows, "no forge configured"))


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
    return Html("".join(_children(parts))) if parts else None


def _pools(snap: Snapshot) -> Html:
    rows: list[list[Child]] = []
    for p in snap.pools:
        idle = p.runners.get(RunnerState.IDLE.value, 0)
        busy = p.runners.get(RunnerState.BUSY.value, 0)
        unavailable = tag("span", p.unavailable, class_="bad") if p.unavailable else "-"
        rows.append(
            [
                tag("b", p.name),
                _chips(p.labels) or tag("span", "(untagged)", class_="mut"),
                p.platform,
                f"{p.active} / {p.max_runners}",
                f"{busy} busy, {idle} idle (keep {p.min_idle} warm)",
                p.pending_jobs,
                unavailable,
            ]
        )
    headers = ["pool", "labels", "platform", "runners / max", "warm", "jobs", "unavailable"]
    return tag("section", tag("h2", "Pools"), _table(headers, rows, "no pool configured"))


def _waiting(snap: Snapshot, now: datetime) -> Html:
    shown = snap.waiting[:MAX_ROWS]
    rows = [
        [
            tag("code", w.job.key),
            w.job.name or None,
            w.job.scope,
            _chips(sorted(w.job.tags)) or tag("span", "(untagged)", class_="mut"),
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
        _table(headers, rows, "no job is waiting"),
        _more(len(snap.waiting), len(shown), "jobs"),
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
            _runner_link(r.id, r.name),
            r.pool,
            tag("span", r.state.value, class_=_STATE_CLASS.get(r.state, "")),
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
        _table(headers, _runner_rows(listed, now), "no runner"),
        _more(len(active), min(len(active), MAX_ROWS), "runners"),
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
    return tag("section", tag("h2", "Docker hosts"), _table(headers, rows, "no host known yet"))


def _event_rows(events: Sequence[Transition], now: datetime, *, with_runner: bool) -> Html:
    rows: list[list[Child]] = [
        [
            tag("span", f"{ago(e.at, now)} ago", title=e.at.isoformat()),
            _runner_link(e.runner_id) if with_runner else None,
            e.pool if with_runner else None,
            tag("b", event_word(e.from_state, e.to_state)),
            e.reason or "-",
        ]
        for e in events
    ]
    headers = (
        ["when", "runner", "pool", "event", "reason"]
        if with_runner
        else [
            "when",
            "event",
            "reason",
        ]
    )
    if not with_runner:
        rows = [[cell for cell in row if cell is not None] for row in rows]
    return _table(headers, rows, "no event yet")


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
                    _event_rows(events[:LATEST_EVENTS], now, with_runner=True),
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


# --- one runner ---------------------------------------------------------------------------


def runner_live(runner: Runner, events: Sequence[Transition], now: datetime) -> Html:
    fields: list[tuple[str, Child]] = [
        ("pool", runner.pool),
        ("forge", runner.forge),
        ("state", tag("b", runner.state.value, class_=_STATE_CLASS.get(runner.state, ""))),
        ("since", _when(runner.since, now)),
        ("created", _when(runner.created_at, now)),
        ("current job", tag("code", runner.current_job) if runner.current_job else "-"),
        ("last job ended", _when(runner.last_job_ended_at, now)),
        ("platform", runner.platform or "-"),
        ("scope", runner.scope or "-"),
        ("host", runner.host or "-"),
        ("container", tag("code", runner.container_id[:12]) if runner.container_id else "-"),
        ("forge runner id", runner.forge_runner_id or "-"),
        ("exit code", "-" if runner.exit_code is None else runner.exit_code),
        ("error", tag("span", runner.error, class_="bad") if runner.error else "-"),
    ]
    table = tag(
        "div",
        tag("table", tag("tbody", [tag("tr", tag("th", k), tag("td", v)) for k, v in fields])),
        class_="scroll",
    )
    return Html(
        tag("p", tag("a", "← all runners", href="/"))
        + tag("h1", "runner ", tag("code", runner.name))
        + tag("p", tag("code", runner.id), class_="mut")
        + table
        + tag("h2", f"History ({len(events)} events)")
        + _event_rows(events, now, with_runner=False)
    )


def _logs_section(runner: Runner, logs: str | None, management: bool) -> Html:
    heading = tag("h2", "Log tail")
    if logs is not None:
        return tag("section", heading, tag("pre", logs or "(no output)", id="logs"))
    if not management:
        note = "The log tail needs the management API (MANAGEMENT_ENABLED and MANAGEMENT_TOKEN)."
        return tag("section", heading, tag("p", note, class_="mut"))
    return tag(
        "section",
        heading,
        tag(
            "form",
            tag("label", "management token "),
            tag(
                "input",
                id="token",
                type="password",
                autocomplete="off",
                placeholder="MANAGEMENT_TOKEN",
            ),
            " ",
            tag("button", "show the log tail", type="submit"),
            id="logs-form",
            data_src=f"/api/v1{runner_path(runner.id)}/logs?tail=200",
        ),
        tag("pre", "(the token is sent to this daemon only, never stored)", id="logs"),
    )


def runner_page(
    runner: Runner,
    events: Sequence[Transition],
    now: datetime,
    *,
    logs: str | None,
    management: bool,
) -> Html:
    """``/runners/<id>``: the runner, its history, and its log tail only with the token."""
    return document(
        f"runner {runner.name}",
        f"{runner_path(runner.id)}?part=live",
        runner_live(runner, events, now),
        _logs_section(runner, logs, management),
    )


def not_found_page(what: str) -> Html:
    return document(
        "not found",
        None,
        Html(tag("h1", "Not found") + tag("p", what) + tag("p", tag("a", "← status", href="/"))),
    )
