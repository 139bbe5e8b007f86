"""Checks of the environment a valid configuration points at, before anything starts.

A configuration can be valid and still unusable: ``STATE_PATH`` names a directory,
``DATA_DIR`` is not writable, the journal file is damaged, a TLS file is missing. Each of
these used to surface as a traceback from deep inside ``run`` (after ``check-config`` said
OK). Here each is one line, and each is classed:

* ``config`` (exit 2): the configuration names something that cannot work (a directory as
  the journal file, a TLS file that does not exist);
* ``environment`` (exit 1): the configuration is fine but the machine is not (permissions,
  a damaged journal).

:func:`check` has no side effects (it creates, opens for writing and locks nothing), so
``check-config`` runs it too. :func:`check_journal` opens the journal read-only and reads
every page; ``run`` and ``plan`` call it before they open the journal for real.

A damaged journal is never repaired or replaced here: the daemon refuses to start and says
what to do (docs/security.md, "A damaged journal"), because starting on an empty journal
would make the daemon remove its own running containers, jobs and all.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import Literal

from orchestrator.config import Settings
from orchestrator.config_errors import shown_path

SQLITE_HEADER = b"SQLite format 3\x00"
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 1
DAMAGED_HELP = (
    "refusing to start so nothing is lost; keep the file, see docs/security.md "
    '"A damaged journal" (move it aside and restart with the same INSTANCE_ID)'
)


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    kind: Literal["config", "environment"]
    text: str

    @property
    def exit_code(self) -> int:
        return EXIT_CONFIG if self.kind == "config" else EXIT_ENVIRONMENT


def exit_code(problems: list[Problem]) -> int:
    """2 if any problem is the configuration's, 1 if only the environment's, else 0."""
    return max((p.exit_code for p in problems), default=0)


def render(problems: list[Problem]) -> str:
    return "\n".join(
        f"{'invalid config' if p.kind == 'config' else 'cannot start'}: {p.text}" for p in problems
    )


def _journal_field(settings: Settings) -> str:
    return "state_path (env STATE_PATH)" if settings.state_path else "data_dir (env DATA_DIR)"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check(settings: Settings) -> list[Problem]:
    """Every problem found without side effects (see the module doc)."""
    problems = _journal_path_problems(settings)
    for index, host in enumerate(settings.docker_hosts):
        for name in ("tls_ca", "tls_cert", "tls_key"):
            value: Path | None = getattr(host, name)
            if value is not None and not value.is_file():
                problems.append(
                    Problem(
                        "config", f"docker_hosts[{index}].{name}: {shown_path(value)} is not a file"
                    )
                )
    return problems


def _journal_path_problems(settings: Settings) -> list[Problem]:
    path = settings.journal_path
    field = _journal_field(settings)
    if path.is_dir():
        return [
            Problem("config", f"{field}: {shown_path(path)} is a directory; the journal is a file")
        ]
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        return [Problem("config", f"{field}: {shown_path(existing)} is a file, not a directory")]
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            who = f"uid {os.getuid()}"
            return [
                Problem(
                    "environment", f"journal {shown_path(path)}: not readable and writable by {who}"
                )
            ]
        return _header_problems(path)
    if not os.access(existing, os.W_OK | os.X_OK):
        return [
            Problem(
                "environment",
                f"{field}: cannot create the journal under {shown_path(existing)} "
                f"(not writable by uid {os.getuid()})",
            )
        ]
    return []


def _header_problems(path: Path) -> list[Problem]:
    try:
        with path.open("rb") as stream:
            head = stream.read(len(SQLITE_HEADER))
    except OSError as exc:
        return [
            Problem("environment", f"journal {shown_path(path)}: cannot be read ({exc.strerror})")
        ]
    if head and head != SQLITE_HEADER:
        return [
            Problem(
                "environment",
                f"journal {shown_path(path)} is not an SQLite database; {DAMAGED_HELP}",
            )
        ]
    return []


def check_journal(path: Path) -> list[Problem]:
    """Read every page of the journal read-only (``PRAGMA quick_check``); a damaged one is
    a problem. An absent or empty file is fine: the daemon creates it."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    problems = _header_problems(path)
    if problems:
        return problems
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return [
            Problem("environment", f"journal {shown_path(path)} is damaged ({exc}); {DAMAGED_HELP}")
        ]
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    if verdict != "ok":
        return [
            Problem(
                "environment", f"journal {shown_path(path)} is damaged ({verdict}); {DAMAGED_HELP}"
            )
        ]
    return []
