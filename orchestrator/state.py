"""The state journal: every runner and every state change, in SQLite, written first.

The rule that makes restarts safe: a row (or a transition) is committed BEFORE the
external action it describes. A runner row exists before its forge registration; the
``registering`` transition is committed before the forge is asked; the forge runner id
is stored as soon as the forge answers, before the container is created; the container
id is stored before the container is started. So after a crash at any point the next
start finds a row that says how far it got, and can finish or roll back.

Transitions are checked against :data:`orchestrator.models.TRANSITIONS`; an invalid one
raises :class:`~orchestrator.models.InvalidTransition` and changes nothing.

The rows themselves (schema, typed fields, reading a row back) are in
:mod:`orchestrator.state_rows`; this module owns the connection and the order of writes.

SQLite calls are short and local; they run inline on the event loop on purpose: a
journal write must finish before the action it guards, and the WAL keeps them sub-ms.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Unpack

from orchestrator.models import ACTIVE_STATES, Runner, RunnerState, check_transition
from orchestrator.state_rows import (
    SCHEMA,
    RunnerFields,
    Transition,
    TransitionListener,
    UnknownRunner,
    dt,
    migrate,
    row_to_runner,
    row_to_transition,
    ts,
    write_fields,
)

# Importers name these as ``orchestrator.state``'s (web, page, metrics, events, activity).
__all__ = ["Journal", "RunnerFields", "Transition", "TransitionListener", "UnknownRunner"]


class Journal:
    """The SQLite journal. One per daemon; not shared between processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: in WAL mode a commit is still written (to the OS) before the
        # action it guards, so a daemon crash loses nothing; only a power loss can drop
        # the last commits, which recover/gc/orphan removal already repair. FULL fsynced
        # every write on the event loop: 1.7-7 ms each, 5 per spawned runner (benchmarks.md).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        migrate(self._db)
        self._listeners: list[TransitionListener] = []

    @classmethod
    def open_read_only(cls, path: Path) -> Journal:
        """The journal at ``path`` for reading only (``plan``); an empty one if absent."""
        if not path.is_file():
            return cls(":memory:")
        journal = cls.__new__(cls)
        journal.path = path
        journal._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        journal._db.row_factory = sqlite3.Row
        journal._listeners = []
        return journal

    def on_transition(self, listener: TransitionListener) -> None:
        """Call ``listener`` after every committed transition (creation included)."""
        self._listeners.append(listener)

    def _notify(
        self, runner_id: str, from_state: str | None, to: str, at: datetime, reason: str
    ) -> None:
        if not self._listeners:
            return
        row = self._db.execute(
            "SELECT pool, forge FROM runners WHERE id=?", (runner_id,)
        ).fetchone()
        event = Transition(
            seq=0,
            runner_id=runner_id,
            pool=row["pool"] if row else "",
            forge=row["forge"] if row else "",
            from_state=from_state,
            to_state=to,
            at=at,
            reason=reason,
        )
        for listener in self._listeners:
            listener(event)

    def stored_instance_id(self) -> str:
        """The instance id kept in the journal, or '' (never writes, unlike instance_id)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='instance_id'").fetchone()
        except sqlite3.Error:
            return ""
        return str(row["value"]) if row else ""

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- meta ----------------------------------------------------------------------------

    def instance_id(self, configured: str = "") -> str:
        """The daemon instance id: configured, else the stored one, else a new random one.

        Kept in the journal so a restart adopts the same containers and forge runners.
        """
        row = self._db.execute("SELECT value FROM meta WHERE key='instance_id'").fetchone()
        if configured:
            if row is None or row["value"] != configured:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('instance_id', ?)",
                    (configured,),
                )
            return configured
        if row is not None:
            return str(row["value"])
        new = secrets.token_hex(4)
        self._db.execute("INSERT INTO meta(key, value) VALUES('instance_id', ?)", (new,))
        return new

    # --- runners ---------------------------------------------------------------------------

    def create(
        self,
        *,
        runner_id: str,
        name: str,
        pool: str,
        forge: str,
        platform: str,
        now: datetime,
        scope: str = "",
    ) -> Runner:
        """Journal a new runner in ``requested``, before anything exists outside."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO runners(id, name, pool, forge, state, since, created_at, platform,"
                " scope) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    runner_id,
                    name,
                    pool,
                    forge,
                    RunnerState.REQUESTED.value,
                    ts(now),
                    ts(now),
                    platform,
                    scope,
                ),
            )
            db.execute(
                "INSERT INTO transitions(runner_id, from_state, to_state, at, reason)"
                " VALUES(?, NULL, ?, ?, 'created')",
                (runner_id, RunnerState.REQUESTED.value, ts(now)),
            )
        self._notify(runner_id, None, RunnerState.REQUESTED.value, now, "created")
        return self.get(runner_id)

    def get(self, runner_id: str) -> Runner:
        row = self._db.execute("SELECT * FROM runners WHERE id=?", (runner_id,)).fetchone()
        if row is None:
            raise UnknownRunner(runner_id)
        return row_to_runner(row)

    def transition(
        self,
        runner_id: str,
        to: RunnerState,
        *,
        now: datetime,
        reason: str = "",
        **fields: Unpack[RunnerFields],
    ) -> Runner:
        """Move a runner to ``to`` (validated), optionally updating fields, atomically.

        A transition to the state it is already in only updates the fields.
        """
        changed: RunnerState | None = None
        with self._tx() as db:
            row = db.execute("SELECT state FROM runners WHERE id=?", (runner_id,)).fetchone()
            if row is None:
                raise UnknownRunner(runner_id)
            current = RunnerState(row["state"])
            if current is not to:
                changed = current
                check_transition(runner_id, current, to)
                db.execute(
                    "UPDATE runners SET state=?, since=? WHERE id=?",
                    (to.value, ts(now), runner_id),
                )
                db.execute(
                    "INSERT INTO transitions(runner_id, from_state, to_state, at, reason)"
                    " VALUES(?, ?, ?, ?, ?)",
                    (runner_id, current.value, to.value, ts(now), reason),
                )
            write_fields(db, runner_id, fields)
        if changed is not None:
            self._notify(runner_id, changed.value, to.value, now, reason)
        return self.get(runner_id)

    def update(self, runner_id: str, **fields: Unpack[RunnerFields]) -> Runner:
        """Change non-state fields (container id, forge runner id, current job, ...)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM runners WHERE id=?", (runner_id,)).fetchone() is None:
                raise UnknownRunner(runner_id)
            write_fields(db, runner_id, fields)
        return self.get(runner_id)

    def active(self) -> list[Runner]:
        """Every runner not yet removed, oldest first."""
        marks = ",".join("?" * len(ACTIVE_STATES))
        rows = self._db.execute(
            f"SELECT * FROM runners WHERE state IN ({marks}) ORDER BY created_at, id",  # noqa: S608
            tuple(s.value for s in ACTIVE_STATES),
        ).fetchall()
        return [row_to_runner(r) for r in rows]

    def recent(self, limit: int = 200) -> list[Runner]:
        """Active runners plus the most recently removed ones (for /runners and logs)."""
        rows = self._db.execute(
            "SELECT * FROM runners ORDER BY since DESC LIMIT ?", (limit,)
        ).fetchall()
        return [row_to_runner(r) for r in rows]

    def history(self, runner_id: str) -> list[tuple[str | None, str, datetime, str]]:
        """Every transition of one runner, oldest first."""
        rows = self._db.execute(
            "SELECT from_state, to_state, at, reason FROM transitions WHERE runner_id=?"
            " ORDER BY seq",
            (runner_id,),
        ).fetchall()
        result = []
        for r in rows:
            at = dt(r["at"])
            assert at is not None
            result.append((r["from_state"], r["to_state"], at, r["reason"]))
        return result

    def events(
        self,
        *,
        runner_id: str | None = None,
        pool: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Transition]:
        """Transitions newest first, optionally of one runner or pool, below seq ``before``.

        Kept as long as their runner is (removed runners are pruned after a retention).
        """
        rows = self._db.execute(
            "SELECT t.seq, t.runner_id, r.pool, r.forge, t.from_state, t.to_state, t.at, t.reason"
            " FROM transitions t LEFT JOIN runners r ON r.id = t.runner_id"
            " WHERE (:runner IS NULL OR t.runner_id = :runner)"
            " AND (:pool IS NULL OR r.pool = :pool)"
            " AND (:before IS NULL OR t.seq < :before)"
            " ORDER BY t.seq DESC LIMIT :limit",
            {"runner": runner_id, "pool": pool, "before": before, "limit": limit},
        ).fetchall()
        return [row_to_transition(r) for r in rows]

    def prune(self, older_than: datetime) -> int:
        """Forget removed runners last changed before ``older_than``. Returns how many."""
        with self._tx() as db:
            ids = [
                r["id"]
                for r in db.execute(
                    "SELECT id FROM runners WHERE state=? AND since<?",
                    (RunnerState.REMOVED.value, ts(older_than)),
                ).fetchall()
            ]
            for runner_id in ids:
                db.execute("DELETE FROM transitions WHERE runner_id=?", (runner_id,))
                db.execute("DELETE FROM runners WHERE id=?", (runner_id,))
        return len(ids)
