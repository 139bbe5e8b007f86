"""What every bench section shares: the Docker client, running-container counts,
percentiles, the raw create+start baseline, a daemon's CPU and RSS, the machine.

Importing this module connects to the local Docker Engine (``docker.from_env``)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import docker

from tests.e2e.harness import TEST_IMAGE, Daemon

BENCH_LABEL = {"io.runner-orchestrator.bench": "true"}
client = docker.from_env()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)


def running(instance: str) -> int:
    """Running containers of ``instance``: one list call. (The SDK's high-level
    ``containers.list`` also inspects every container it lists; polled every 20-50 ms
    during a burst, that loaded the engine with up to a thousand inspects a second that
    only the daemon's rows paid for.)"""
    return len(
        client.api.containers(
            filters={"label": f"io.runner-orchestrator.instance={instance}", "status": "running"}
        )
    )


def baseline_one(n: int = 10) -> list[float]:
    """Raw SDK: create + start one container of the test image, n times."""
    times = []
    for _ in range(n):
        started = time.monotonic()
        c = client.containers.create(
            TEST_IMAGE,
            command=["sleep", "30"],
            labels=BENCH_LABEL,
            network_mode="host",
            entrypoint=[],
        )
        c.start()
        times.append(time.monotonic() - started)
        c.remove(force=True)
    return times


def daemon_pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.proc.pid


def cpu_seconds(daemon: Daemon) -> float:
    fields = Path(f"/proc/{daemon_pid(daemon)}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mib(daemon: Daemon) -> float:
    for line in Path(f"/proc/{daemon_pid(daemon)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def machine() -> dict[str, Any]:
    info = client.info()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(info.get("MemTotal", 0) / 2**30, 1),
        "kernel": platform.release(),
        "docker_server": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "python": platform.python_version(),
        "image": TEST_IMAGE,
    }
