"""``runner-orchestrator status``: a running daemon's state in a terminal, from its API.

For admins on SSH: pools, runners, waiting jobs with their reason in words and the latest
events, read from ``/status``, ``/runners`` and ``/api/v1/events`` of the daemon (never
from the journal or a forge: the daemon's view is the one that matters). ``--json``
prints the three answers as one JSON object for scripts. Strings from forges are shown
with control characters replaced, so a job name cannot drive the terminal.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any, TextIO

from orchestrator.events import event_word
from orchestrator.markup import ago
from orchestrator.page import reason_sentence

#: How long to wait for the daemon (it answers from memory, so this is generous).
TIMEOUT_S = 10.0
#: Rows per section in the terminal (the JSON has what the API gives).
MAX_ROWS = 50


class Unreachable(Exception):
    """The daemon did not answer (or not with JSON): one line for the admin."""


def default_url(env: dict[str, str] | None = None) -> str:
    """The daemon's API from HTTP_HOST/HTTP_PORT (a wildcard bind is asked on loopback)."""
    env = dict(os.environ) if env is None else env
    host = env.get("HTTP_HOST", "").strip() or "127.0.0.1"
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = env.get("HTTP_PORT", "").strip() or "8080"
    return f"http://{host}:{port}"


def fetch(base: str, path: str) -> Any:
    url = base.rstrip("/") + path
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{url}: {reason}") from None


def gather(base: str) -> dict[str, Any]:
    return {
        "url": base,
        "status": fetch(base, "/status?limit=500"),
        "runners": fetch(base, "/runners?limit=500"),
        "events": fetch(base, "/api/v1/events?limit=10")["events"],
    }


def _clean(value: object) -> str:
    """Text safe to print: control characters (escape sequences too) become '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(value))


def _when(value: str | None, now: datetime) -> str:
    if not value:
        return "never"
    try:
        return f"{ago(datetime.fromisoformat(value), now)} ago"
    except ValueError:
        return _clean(value)


def render(data: dict[str, Any], now: datetime, out: TextIO) -> None:
    """The terminal summary of what :func:`gather` returned."""
    status, runners = data["status"], data["runners"]
    rec = status["reconcile"]
    line = f"runner-orchestrator {_clean(status['instance'])} at {_clean(data['url'])}"
    print(line, file=out)
    print(
        f"last reconcile: {_clean(rec['result'])} {_when(rec.get('finished_at'), now)}"
        + (f" ({rec['count']} so far)" if rec.get("count") else ""),
        file=out,
    )
    if rec.get("error"):
        print(f"  error: {_clean(rec['error'])}", file=out)

    print("\nFORGES", file=out)
    for f in status["forges"]:
        health = f"PAUSED: {_clean(f['error'])}" if f["paused"] else "ok"
        rate = f.get("rate_limit_remaining")
        rate_text = f", rate limit left {rate}" if rate is not None else ""
        print(
            f"  {_clean(f['name'])} ({_clean(f['kind'])}): {health}{rate_text}, "
            f"last good poll {_when(f.get('last_ok_at'), now)}, {f['pending_jobs']} jobs",
            file=out,
        )

    print("\nPOOLS", file=out)
    for p in status["pools"]:
        labels = ", ".join(_clean(x) for x in p["labels"]) or "untagged"
        by_state = p.get("runners", {})
        warm = f"{by_state.get('busy', 0)} busy, {by_state.get('idle', 0)} idle"
        unavailable = f"  UNAVAILABLE: {_clean(p['unavailable'])}" if p.get("unavailable") else ""
        print(
            f"  {_clean(p['name'])} [{labels}] {_clean(p['platform'])}: "
            f"{p['active']}/{p['max_runners']} runners ({warm}, keep {p.get('min_idle', 0)} "
            f"warm), {p.get('pending_jobs', 0)} jobs{unavailable}",
            file=out,
        )

    active = [r for r in runners["runners"] if r["state"] != "removed"]
    print(f"\nRUNNERS ({len(active)} active)", file=out)
    for r in active[:MAX_ROWS]:
        job = f" job {_clean(r['current_job'])}" if r.get("current_job") else ""
        host = f" on {_clean(r['host'])}" if r.get("host") else ""
        error = f"  error: {_clean(r['error'])}" if r.get("error") else ""
        print(
            f"  {_clean(r['name'])} ({_clean(r['pool'])}): {_clean(r['state'])} for "
            f"{_when(r['since'], now).removesuffix(' ago')}{job}{host}{error}",
            file=out,
        )
    _more(len(active), MAX_ROWS, "runners", out)

    waiting = status["waiting_jobs"]
    total = status.get("waiting_jobs_total", len(waiting))
    print(f"\nWAITING JOBS ({total})", file=out)
    for w in waiting[:MAX_ROWS]:
        tags = ", ".join(_clean(t) for t in w.get("tags", [])) or "untagged"
        name = f" {_clean(w['name'])}" if w.get("name") else ""
        detail = f" ({_clean(w['detail'])})" if w.get("detail") else ""
        print(
            f"  {_clean(w['job'])}{name} [{tags}] waiting "
            f"{_when(w.get('created_at'), now).removesuffix(' ago')}: "
            f"{_clean(reason_sentence(w['reason'], w.get('pool')))}{detail}",
            file=out,
        )
    _more(total, min(MAX_ROWS, len(waiting)), "waiting jobs", out)

    print("\nLATEST EVENTS", file=out)
    for e in data["events"]:
        reason = f": {_clean(e['reason'])}" if e.get("reason") else ""
        print(
            f"  {_when(e['at'], now)}  {_clean(e['runner'])} ({_clean(e['pool'])}) "
            f"{event_word(e.get('from'), e['to'])}{reason}",
            file=out,
        )
    if not data["events"]:
        print("  none yet", file=out)


def _more(total: int, shown: int, what: str, out: TextIO) -> None:
    if total > shown:
        print(f"  ... and {total - shown} more {what}", file=out)


def main(url: str | None, *, as_json: bool, out: TextIO | None = None) -> int:
    """Exit 0 with the summary; 1 with one line on stderr when the daemon does not answer."""
    out = out or sys.stdout
    base = url or os.environ.get("RUNNER_ORCHESTRATOR_URL") or default_url()
    try:
        data = gather(base)
    except Unreachable as exc:
        print(f"runner-orchestrator status: daemon not reachable: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(data, indent=2), file=out)
    else:
        render(data, datetime.now(UTC), out)
    return 0
