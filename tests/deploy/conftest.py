"""Fixtures for the deployment checks: an in-process daemon on fakes with real /metrics."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from orchestrator.app import Daemon
from orchestrator.config import Settings
from tests.fakes import FakeForge, FakeRuntime, FakeWorld


@dataclasses.dataclass
class LiveDaemon:
    daemon: Daemon
    world: FakeWorld
    url: str

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/metrics") as response:
                assert response.status == 200
                return await response.text()


@pytest.fixture
async def live_daemon(make_settings: Callable[..., Settings]) -> AsyncIterator[LiveDaemon]:
    """The real Daemon (HTTP, metrics, reconciler, scheduler) over the fakes, on a free port.

    A job waits before the start, so the first reconcile spawns a runner for it: the
    pickup-latency histogram, the spawn counter and the reconcile histogram have samples.
    """
    world = FakeWorld()
    world.add_job("gitlab", ["docker"], created_at=datetime.now(UTC) - timedelta(seconds=7))
    settings = make_settings(
        pools=[{"name": "amd64", "labels": ["docker"], "max_runners": 2, "cooldown_s": 300}],
        poll_interval=30,
        http_host="127.0.0.1",
        http_port=0,
    )

    def providers(s: Settings, instance: str, observer: Any) -> dict[str, Any]:
        return {"gitlab": FakeForge(world, name="gitlab", kind="gitlab", instance_id=instance)}

    daemon = Daemon(
        settings, providers=providers, runtime=lambda s, i: FakeRuntime(world, instance_id=i)
    )
    await daemon.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while daemon.reconciler is None or daemon.reconciler.snapshot.result == "never":
            assert loop.time() < deadline, "the first reconcile did not finish in 15 s"
            await asyncio.sleep(0.05)
        assert daemon.reconciler is not None
        await daemon.reconciler.run_once()  # a second one: counters move, nothing new spawns
        assert world.live_containers(), "the waiting job got no runner"
        yield LiveDaemon(daemon, world, f"http://127.0.0.1:{daemon.port}")
    finally:
        await daemon.stop()
