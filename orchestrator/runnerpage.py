"""One runner's page at ``/runners/<id>`` (its state, history and log tail), and "not found".

Pure rendering like the status page (:mod:`orchestrator.page`), built with
:mod:`orchestrator.markup`. The log tail is in the page only when the web layer was given
it (the request carried the management token); otherwise, with the management API on,
the page offers a form whose script fetches it with a token typed in (never stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from orchestrator.markup import (
    STATE_CLASS,
    Child,
    Html,
    document,
    event_table,
    runner_path,
    tag,
    time_ago,
)
from orchestrator.models import Runner
from orchestrator.state import Transition


def runner_live(runner: Runner, events: Sequence[Transition], now: datetime) -> Html:
    fields: list[tuple[str, Child]] = [
        ("pool", runner.pool),
        ("forge", runner.forge),
        ("state", tag("b", runner.state.value, class_=STATE_CLASS.get(runner.state, ""))),
        ("since", time_ago(runner.since, now)),
        ("created", time_ago(runner.created_at, now)),
        ("current job", tag("code", runner.current_job) if runner.current_job else "-"),
        ("last job ended", time_ago(runner.last_job_ended_at, now)),
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
        + event_table(events, now, with_runner=False)
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
