"""The journal's rows: its SQLite schema, the typed fields a runner row may change, and
how a row reads back as a :class:`~orchestrator.models.Runner` or a :class:`Transition`.

Split from :mod:`orchestrator.state` (the :class:`~orchestrator.state.Journal`, which owns
the connection and writes in order); this module holds no state and does no I/O of its own
beyond the statements it is handed a connection for.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

from orchestrator.models import Runner, RunnerState

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    pool TEXT NOT NULL,
    forge TEXT NOT NULL,
    state TEXT NOT NULL,
    since TEXT NOT NULL,
    created_at TEXT NOT NULL,
    platform TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    container_id TEXT NOT NULL DEFAULT '',
    forge_runner_id TEXT NOT NULL DEFAULT '',
    current_job TEXT NOT NULL DEFAULT '',
    last_job_ended_at TEXT,
    exit_code INTEGER,
    error TEXT NOT NULL DEFAULT '',
    logs_tail TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runners_state ON runners(state);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    runner_id TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS transitions_runner ON transitions(runner_id);
"""

#: Columns added after the first release, with their definition: a journal written by an
#: older version gets them on open (``CREATE TABLE IF NOT EXISTS`` leaves its table as is).
_ADDED_COLUMNS = {"scope": "TEXT NOT NULL DEFAULT ''"}


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns an older journal lacks; old rows get the column's default."""
    have = {row[1] for row in db.execute("PRAGMA table_info(runners)")}
    for column, definition in _ADDED_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE runners ADD COLUMN {column} {definition}")


class RunnerFields(TypedDict, total=False):
    """The fields :meth:`~orchestrator.state.Journal.update` (and a transition) may change
    besides the state.

    Typed, so a misspelt or wrongly typed field is a type error, not a runtime surprise.
    """

    platform: str
    host: str
    container_id: str
    forge_runner_id: str
    current_job: str
    last_job_ended_at: datetime | None
    exit_code: int | None
    error: str
    logs_tail: str
    name: str


#: Column names a journal update may write (the keys of :class:`RunnerFields`).
_MUTABLE = frozenset(RunnerFields.__annotations__)


class UnknownRunner(KeyError):
    """No journal row with that id."""


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One journalled lifecycle step of a runner (for the event history)."""

    seq: int
    runner_id: str
    pool: str
    forge: str
    from_state: str | None  # None: the runner was created
    to_state: str
    at: datetime
    reason: str


#: Called after a transition is committed (metrics); must not raise or block.
TransitionListener = Callable[[Transition], None]


def ts(value: datetime | None) -> str | None:
    """A time as the journal stores it: ISO 8601 in UTC."""
    return None if value is None else value.astimezone(UTC).isoformat()


def dt(value: str | None) -> datetime | None:
    """A stored time read back (aware)."""
    return None if value is None else datetime.fromisoformat(value)


def row_to_runner(row: sqlite3.Row) -> Runner:
    since = dt(row["since"])
    created = dt(row["created_at"])
    assert since is not None
    assert created is not None
    return Runner(
        id=row["id"],
        name=row["name"],
        pool=row["pool"],
        forge=row["forge"],
        state=RunnerState(row["state"]),
        since=since,
        created_at=created,
        platform=row["platform"],
        host=row["host"],
        container_id=row["container_id"],
        forge_runner_id=row["forge_runner_id"],
        current_job=row["current_job"],
        last_job_ended_at=dt(row["last_job_ended_at"]),
        exit_code=row["exit_code"],
        error=row["error"],
        logs_tail=row["logs_tail"],
        # A read-only journal (``plan``) of an older version has no scope column.
        scope=row["scope"] if "scope" in row.keys() else "",  # noqa: SIM118
    )


def row_to_transition(row: sqlite3.Row) -> Transition:
    """A ``transitions`` row joined with its runner's pool and forge (gone: '')."""
    at = dt(row["at"])
    assert at is not None
    return Transition(
        seq=row["seq"],
        runner_id=row["runner_id"],
        pool=row["pool"] or "",
        forge=row["forge"] or "",
        from_state=row["from_state"],
        to_state=row["to_state"],
        at=at,
        reason=row["reason"],
    )


def write_fields(db: sqlite3.Connection, runner_id: str, fields: RunnerFields) -> None:
    """Update a runner row's non-state fields (inside the caller's transaction)."""
    if not fields:
        return
    unknown = set(fields) - _MUTABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values: list[Any] = [ts(v) if isinstance(v, datetime) else v for v in fields.values()]
    assignments = ", ".join(f"{k}=?" for k in fields)
    db.execute(f"UPDATE runners SET {assignments} WHERE id=?", (*values, runner_id))  # noqa: S608
