"""The HTML both pages are built with: escaped by construction, one self-contained document.

Every string from a forge, the config or the journal (job names, tags, labels, errors)
can hold any text, so markup is built with :func:`tag`, which escapes every child and
attribute value unless it is already :class:`Html` made by this module. There is no other
way to put text into a page.

:func:`document` is the page frame: no external assets (homelabs are often offline), no
build step. Its style and script are ``static/page.css`` and ``static/page.js`` in this
package, read once at import and inlined, so a page is still one document; the script
refreshes the live part every few seconds by fetching ``?part=live`` (a ``<noscript>``
meta refresh does it without JavaScript). The Content-Security-Policy (:data:`CSP`) allows
only that script and style (by hash) as a second line of defence.

Also here: the pieces both pages share (ages, tables, runner links, event history).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from importlib import resources
from typing import TypeAlias
from urllib.parse import quote

from orchestrator.events import event_word
from orchestrator.models import RunnerState
from orchestrator.state import Transition

#: Seconds between refreshes of the live part of a page.
REFRESH_S = 5


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


def concat(children: Iterable[Child]) -> Html:
    """``children`` side by side, each escaped as :func:`tag` escapes them."""
    return Html("".join(_children(children)))


def _asset(name: str) -> str:
    return (resources.files("orchestrator") / "static" / name).read_text(encoding="utf-8")


# Inlined after a newline (the page's bytes, and so the CSP hashes, stay as they were).
_STYLE = "\n" + _asset("page.css")
_SCRIPT = "\n" + _asset("page.js").replace("REFRESH_MS", str(REFRESH_S * 1000))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: Only the page's own inline script and style may run; fetches go to this daemon.
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


# --- shared pieces ----------------------------------------------------------------------


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


def time_ago(value: datetime | None, now: datetime) -> Html:
    """``12 s ago`` with the exact time as its title; ``never`` for None."""
    if value is None:
        return tag("span", "never", class_="mut")
    return tag("span", f"{ago(value, now)} ago", title=value.isoformat())


#: The colour class of each runner state (as text).
STATE_CLASS = {
    RunnerState.BUSY: "ok",
    RunnerState.IDLE: "",
    RunnerState.FAILED: "bad",
    RunnerState.DRAINING: "warn",
    RunnerState.REMOVED: "mut",
}


def chips(values: Iterable[str]) -> list[Html]:
    return [tag("span", v, class_="chip") for v in values]


def row_table(headers: Sequence[str], rows: Sequence[Sequence[Child]], empty: str) -> Html:
    """A table whose cells carry their column name (a phone shows each row as lines)."""
    if not rows:
        return tag("p", empty, class_="mut")
    head = tag("tr", [tag("th", h) for h in headers])
    body = [
        tag("tr", [tag("td", cell, data_label=h) for h, cell in zip(headers, row, strict=True)])
        for row in rows
    ]
    table = tag("table", tag("thead", head), tag("tbody", body), class_="rows")
    return tag("div", table, class_="scroll")


def more_note(total: int, shown: int, what: str) -> Html:
    """``… and 1,234 more jobs (not shown)`` when a list was cut; nothing otherwise."""
    if total <= shown:
        return Html("")
    return tag("p", f"… and {total - shown:,} more {what} (not shown)", class_="mut")


def runner_path(runner_id: str) -> str:
    return "/runners/" + quote(runner_id, safe="")


def runner_link(runner_id: str, text: str | None = None) -> Html:
    return tag("a", text or runner_id, href=runner_path(runner_id))


def event_table(events: Sequence[Transition], now: datetime, *, with_runner: bool) -> Html:
    """Lifecycle events in the order given; ``with_runner`` adds runner and pool columns."""
    rows: list[list[Child]] = [
        [
            tag("span", f"{ago(e.at, now)} ago", title=e.at.isoformat()),
            runner_link(e.runner_id) if with_runner else None,
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
    return row_table(headers, rows, "no event yet")
