"""``runner-orchestrator status``: what an admin on SSH reads, from the running daemon."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import cli
from orchestrator.app import Daemon
from orchestrator.config import Settings
from orchestrator.models import Job, WaitingJob, WaitReason
from orchestrator.statuscli import default_url
from tests.fakes import FakeForge, FakeRuntime, FakeWorld
from tests.http_support import ThreadedDaemon

ROOT = Path(__file__).resolve().parents[2]
EVIL = "deploy \x1b[2J\x1b[31mred"


@pytest.fixture
def served(make_settings: Callable[..., Settings]) -> Iterator[ThreadedDaemon]:
    world = FakeWorld()
    settings = make_settings(
        pools=[{"name": "amd64", "labels": ["docker"], "max_runners": 1}], poll_interval=30
    )

    def build() -> Daemon:
        def providers(s: Settings, instance: str, observer: Any) -> dict[str, Any]:
            return {"gitlab": FakeForge(world, name="gitlab", kind="gitlab", instance_id=instance)}

        return Daemon(
            settings, providers=providers, runtime=lambda s, i: FakeRuntime(world, instance_id=i)
        )

    served = ThreadedDaemon(build)
    world.add_job("gitlab", ["docker"])
    served.loop.call_soon_threadsafe(served.daemon.scheduler.nudge)
    deadline = time.monotonic() + 20
    while not served.daemon.reconciler.snapshot.runners:
        assert time.monotonic() < deadline, "no runner came up"
        time.sleep(0.05)
    # One more job the forge reports with a name that tries to drive the terminal.
    reconciler = served.daemon.reconciler
    job = Job(
        "gitlab",
        "99",
        "g/p",
        frozenset({"gpu"}),
        datetime.now(UTC) - timedelta(minutes=2),
        name=EVIL,
    )
    extra = WaitingJob(job, None, WaitReason.NO_MATCHING_POOL, "no pool's labels cover [gpu]")
    reconciler.snapshot = dataclasses.replace(reconciler.snapshot, waiting=(extra,))
    yield served
    served.stop()


def test_status_summarises_pools_runners_and_why_jobs_wait(
    served: ThreadedDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--url", served.base]) == 0
    out = capsys.readouterr().out
    assert "POOLS\n  amd64 [docker] linux/amd64: 1/1 runners" in out
    assert "RUNNERS (1 active)" in out and "(amd64): idle for" in out
    assert "WAITING JOBS (1)" in out
    assert "gitlab:99 deploy ?[2J?[31mred [gpu] waiting 2 min: no pool has all of its tags" in out
    assert "\x1b" not in out  # no escape sequence from a forge reaches the terminal
    assert "LATEST EVENTS" in out and "started" in out and "created" in out


def test_status_json_is_for_scripts(
    served: ThreadedDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--json", "--url", served.base]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"url", "status", "runners", "events"}
    assert data["status"]["waiting_jobs"][0]["reason"] == "no_matching_pool"
    assert data["runners"]["total"] == 1


def test_status_of_a_daemon_that_is_not_there_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["status", "--url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not reachable" in err and "Traceback" not in err


def test_status_needs_no_configuration_and_runs_as_a_command(served: ThreadedDaemon) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", "--url", served.base],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WAITING JOBS" in result.stdout


def test_default_url_follows_http_host_and_port() -> None:
    assert default_url({}) == "http://127.0.0.1:8080"
    assert default_url({"HTTP_HOST": "0.0.0.0", "HTTP_PORT": "9000"}) == "http://127.0.0.1:9000"
    assert default_url({"HTTP_HOST": "::1"}) == "http://[::1]:8080"
