"""Shutdown: expected trouble is logged and the shutdown goes on; a bug fails it loudly.

Before: ``Daemon.stop`` swallowed every exception, so a ``FakeRuntime`` without
``release_unused`` logged ``shutdown.release_failed`` (an AttributeError) in every daemon
test and every test stayed green.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.app import Daemon
from orchestrator.config import Settings
from orchestrator.runtime import HostUnavailable
from tests.fakes import FakeForge, FakeRuntime, FakeWorld


def daemon(settings: Settings, runtime: FakeRuntime, world: FakeWorld) -> Daemon:
    def providers(s: Settings, instance: str, observer: Any) -> dict[str, Any]:
        return {"gitlab": FakeForge(world, instance_id=instance)}

    return Daemon(settings, providers=providers, runtime=lambda s, i: runtime)


async def test_clean_shutdown_releases_the_runtime_and_raises_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    world = FakeWorld()
    runtime = FakeRuntime(world)
    d = daemon(make_settings(poll_interval=30), runtime, world)
    await d.start()
    await d.stop()
    assert runtime.released == 1 and runtime.closed


async def test_a_host_that_does_not_answer_at_shutdown_is_not_a_failure(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld()
    runtime = FakeRuntime(world)

    async def down() -> None:
        raise HostUnavailable("local", "connection refused")

    monkeypatch.setattr(runtime, "release_unused", down)
    d = daemon(make_settings(poll_interval=30), runtime, world)
    await d.start()
    await d.stop()
    assert runtime.closed


async def test_a_bug_at_shutdown_still_closes_everything_then_fails_loudly(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld()
    runtime = FakeRuntime(world)

    async def bug() -> None:
        raise AttributeError("'FakeRuntime' object has no attribute 'release_unused'")

    monkeypatch.setattr(runtime, "release_unused", bug)
    d = daemon(make_settings(poll_interval=30), runtime, world)
    await d.start()
    with pytest.raises(ExceptionGroup) as caught:
        await d.stop()
    assert caught.group_contains(AttributeError)
    assert runtime.closed  # the rest of the shutdown still ran
    assert all(p.closed for p in d.providers.values())  # type: ignore[attr-defined]
