"""Every log line the process writes is redacted, the libraries' stdlib ``logging`` lines
included (PyGithub logs through ``logging``, so do urllib3, python-gitlab and aiohttp),
and the suite's secret scan sees those lines too."""

from __future__ import annotations

import io
import json
import logging
import secrets

import pytest
import structlog

from orchestrator import logging as olog
from tests.conftest import SUITE_LOG


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    olog.configure("debug", "json", stream=stream)
    return stream


def test_a_stdlib_logger_emitting_a_registered_secret_is_redacted(captured: io.StringIO) -> None:
    secret = "jit-" + secrets.token_hex(12)
    olog.register_secret(secret)
    try:
        logging.getLogger("github.Requester").warning("POST /generate-jitconfig -> %s", secret)
        logging.getLogger("urllib3.connectionpool").debug(
            "Authorization: token ghp_%s", "A1b2C3d4E5f6G7h8"
        )
        try:
            raise RuntimeError(f"forge said {secret}")
        except RuntimeError:
            logging.getLogger("gitlab").exception("request failed")
    finally:
        olog.forget_secret(secret)
    text = captured.getvalue()
    assert secret not in text and "ghp_A1b2" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["logger"] for line in lines] == [
        "github.Requester",
        "urllib3.connectionpool",
        "gitlab",
    ]
    assert all(olog.MASK in json.dumps(line) for line in lines)
    assert "locals" not in text  # tracebacks carry no frame locals


def test_stdlib_and_structlog_share_one_handler_after_reconfigure(captured: io.StringIO) -> None:
    olog.configure("info", "json", stream=captured)
    olog.configure("info", "json", stream=captured)
    logging.getLogger("aiohttp.server").info("one line, not three")
    structlog.get_logger("x").info("structlog too")
    assert len(captured.getvalue().splitlines()) == 2
    logging.getLogger("apscheduler").debug("below the level")
    logging.getLogger("apscheduler.executors.default").info('Running job "reconcile"')
    assert len(captured.getvalue().splitlines()) == 2  # not one line per reconcile
    logging.getLogger("apscheduler.scheduler").warning("misfire")
    assert len(captured.getvalue().splitlines()) == 3


def test_the_suite_scan_reads_stdlib_lines(request: pytest.FixtureRequest) -> None:
    """The conftest's capture (scanned at session end) receives stdlib records."""
    olog.configure("debug", "json", stream=request.config._ro_log_stream)  # type: ignore[attr-defined]
    marker = "stdlib-marker-" + secrets.token_hex(6)
    logging.getLogger("github.Requester").info(marker)
    request.config._ro_log_stream.flush()  # type: ignore[attr-defined]
    assert marker in SUITE_LOG.read_text(encoding="utf-8")
