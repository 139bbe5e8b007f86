"""Suite-wide fixtures: log capture with a secret scan, fake clock, settings builder.

Every log line the suite's scenarios emit in-process goes to one file, structlog's and the
stdlib ``logging`` records of the libraries (PyGithub, urllib3, python-gitlab, aiohttp)
alike, since :func:`orchestrator.logging.configure` routes both through the same
processors; at the end of the session the file is scanned for secrets (token shapes and
the literal secrets the tests use). A hit fails the run: secrets must never reach a log
line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import logging as olog
from orchestrator.config import Settings

#: Literal secrets the tests hand to the daemon; none may appear in any log line.
TEST_SECRETS = (
    "glpat-testtoken0123456789",
    "ghp_testtoken0123456789abcdef",
    "hook-secret",
    "mgmt-secret-token",
    "glrt-fakecredential",
)
SECRET_SHAPES = re.compile(r"(glpat-|glrt-|ghp_|github_pat_|ghs_)[A-Za-z0-9_\-]{6,}")
#: One directory per test session: the in-process capture and every daemon/simulator
#: subprocess log of this session go here (the e2e harness reads RO_TEST_LOG_DIR), and
#: only this session's files are scanned.
LOG_DIR = Path("/tmp/runner-orchestrator-test-logs") / f"session-{os.getpid()}"  # noqa: S108
os.environ["RO_TEST_LOG_DIR"] = str(LOG_DIR)
SUITE_LOG = LOG_DIR / "suite.log"


def pytest_configure(config: pytest.Config) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stream = SUITE_LOG.open("w", encoding="utf-8", buffering=1)
    config._ro_log_stream = stream  # type: ignore[attr-defined]
    olog.configure("debug", "json", stream=stream)


def scan_for_secrets(text: str) -> list[str]:
    """Every secret-looking fragment in ``text`` (used on daemon logs too)."""
    hits = [s for s in TEST_SECRETS if s in text]
    hits += [m.group(0) for m in SECRET_SHAPES.finditer(text)]
    return hits


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stream = getattr(session.config, "_ro_log_stream", None)
    if stream is not None:
        stream.close()
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in LOG_DIR.glob("*.log")]
    hits = scan_for_secrets("\n".join(texts))
    if hits:
        print(
            f"\nSECRET SCAN FAILED: {len(hits)} secret(s) in captured logs: "
            f"{sorted(set(h[:12] + '...' for h in hits))}"
        )
        session.exitstatus = 1
    else:
        lines = sum(t.count("\n") for t in texts)
        print(f"\nsecret scan: {lines} captured log lines, no secret found")


@pytest.fixture(autouse=True)
def _reconfigure_logging(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests that reconfigure structlog get the suite capture back afterwards."""
    yield
    olog.configure("debug", "json", stream=request.config._ro_log_stream)  # type: ignore[attr-defined]


class Clock:
    """A settable UTC clock for the reconciler (time is an argument, never read)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Build Settings directly (no env leakage) with a temp journal."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "gitlab_url": "http://gitlab.test",
            "gitlab_token": "glpat-testtoken0123456789",
            "gitlab_projects": ["group/project"],
            "state_path": tmp_path / "state.db",
            "instance_id": "test",
            "http_port": 0,
        }
        base.update(overrides)
        return Settings(**base)

    return build
