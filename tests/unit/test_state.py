"""The journal: transitions are validated, written first, and survive a reopen."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.models import InvalidTransition, RunnerState
from orchestrator.state import Journal, UnknownRunner

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_lifecycle_is_journalled_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    journal = Journal(path)
    journal.create(
        runner_id="r1", name="ro-x-a-1", pool="a", forge="gl", platform="linux/amd64", now=T0
    )
    journal.transition("r1", RunnerState.REGISTERING, now=T0)
    journal.transition("r1", RunnerState.STARTING, now=T0, forge_runner_id="42")
    journal.update("r1", container_id="abc", host="local")
    journal.close()

    reopened = Journal(path)
    runner = reopened.get("r1")
    assert runner.state is RunnerState.STARTING
    assert (runner.forge_runner_id, runner.container_id, runner.host) == ("42", "abc", "local")
    assert [h[1] for h in reopened.history("r1")] == ["requested", "registering", "starting"]
    assert [r.id for r in reopened.active()] == ["r1"]


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], RunnerState.IDLE),  # requested -> idle skips registration
        (
            [
                RunnerState.REGISTERING,
                RunnerState.STARTING,
                RunnerState.IDLE,
                RunnerState.DRAINING,
                RunnerState.REMOVED,
            ],
            RunnerState.IDLE,
        ),  # removed is terminal
        ([RunnerState.REGISTERING], RunnerState.BUSY),
    ],
)
def test_invalid_transitions_raise_and_change_nothing(tmp_path: Path, path, bad) -> None:
    journal = Journal(tmp_path / "s.db")
    journal.create(runner_id="r1", name="n", pool="a", forge="gl", platform="", now=T0)
    for state in path:
        journal.transition("r1", state, now=T0)
    before = journal.get("r1").state
    with pytest.raises(InvalidTransition):
        journal.transition("r1", bad, now=T0)
    assert journal.get("r1").state is before


def test_instance_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Journal(tmp_path / "s.db").instance_id()
    assert Journal(tmp_path / "s.db").instance_id() == first
    assert Journal(tmp_path / "s.db").instance_id("fixed") == "fixed"


def test_unknown_runner_and_unknown_fields(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s.db")
    with pytest.raises(UnknownRunner):
        journal.get("nope")
    journal.create(runner_id="r1", name="n", pool="a", forge="gl", platform="", now=T0)
    with pytest.raises(ValueError, match="not updatable"):
        journal.update("r1", state="idle")


def test_prune_forgets_old_removed_rows(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s.db")
    journal.create(runner_id="r1", name="n", pool="a", forge="gl", platform="", now=T0)
    journal.transition("r1", RunnerState.DRAINING, now=T0)
    journal.transition("r1", RunnerState.REMOVED, now=T0)
    assert journal.prune(T0 + timedelta(days=1)) == 1
    assert journal.recent() == []


#: The runners table as the first release wrote it (no ``scope`` column).
_OLD_RUNNERS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runners (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, pool TEXT NOT NULL, forge TEXT NOT NULL,
    state TEXT NOT NULL, since TEXT NOT NULL, created_at TEXT NOT NULL,
    platform TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '',
    container_id TEXT NOT NULL DEFAULT '', forge_runner_id TEXT NOT NULL DEFAULT '',
    current_job TEXT NOT NULL DEFAULT '', last_job_ended_at TEXT, exit_code INTEGER,
    error TEXT NOT NULL DEFAULT '', logs_tail TEXT NOT NULL DEFAULT ''
);
INSERT INTO runners(id, name, pool, forge, state, since, created_at)
    VALUES('old', 'ro-x-a-old', 'a', 'gh', 'idle', '2026-11-23T12:00:00+00:00',
           '2026-11-23T12:00:00+00:00');
"""


def test_a_journal_of_an_older_version_opens_and_gains_the_scope_column(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(_OLD_RUNNERS)
    old.close()
    # Read-only (``plan``) before any migration: the row reads with an empty scope.
    assert Journal.open_read_only(path).get("old").scope == ""

    journal = Journal(path)
    assert journal.get("old").scope == ""  # the old runner serves any job, as before
    journal.create(
        runner_id="new", name="n", pool="a", forge="gh", platform="", now=T0, scope="o/app"
    )
    journal.close()
    reopened = Journal(path)  # a second open finds the column and leaves it alone
    assert {r.id: r.scope for r in reopened.active()} == {"old": "", "new": "o/app"}
