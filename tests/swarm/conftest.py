"""Fixtures for the Swarm runtime against a real single-node swarm.

Skipped with one loud reason when no engine answers or it cannot be a swarm manager.
Every runtime gets an instance id starting with this session's prefix; at the end,
services, secrets, networks and containers of the session are removed and reported as
a leak.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime.swarm import SwarmRuntime
from tests.swarm import support
from tests.swarm.support import Events

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE = "runner-orchestrator/test-runner:latest"
SESSION_PREFIX = "rosw" + secrets.token_hex(2)
DOCKER_URL = os.environ.get("RO_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")
HERE = Path(__file__).resolve().parent
_STATE: dict[str, str] = {}


def _problem() -> str:
    try:
        client = docker.DockerClient(base_url=DOCKER_URL, timeout=10)
        client.ping()
        client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [i for i in items if HERE in Path(str(i.fspath)).resolve().parents]
    if not ours:
        return
    problem = _STATE["problem"] = _problem()
    for item in ours:
        item.add_marker(pytest.mark.docker)
        if problem:
            item.add_marker(
                pytest.mark.skip(reason=f"SWARM TESTS SKIPPED: no Docker Engine ({problem})")
            )


def new_instance_id() -> str:
    return SESSION_PREFIX + secrets.token_hex(3)


@pytest.fixture(scope="session")
def swarm() -> Iterator[Any]:
    """A docker client of an engine that is a swarm manager for the whole session."""
    client = docker.DockerClient(base_url=DOCKER_URL, timeout=60)
    problem = support.acquire(client.api)
    if problem:
        client.close()
        pytest.skip(f"SWARM TESTS SKIPPED: {problem}")
    have = subprocess.run(
        ["docker", "image", "inspect", TEST_IMAGE], capture_output=True, check=False
    )
    if have.returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True, timeout=300)
    try:
        yield client
        leaked = support.leftovers(client, SESSION_PREFIX)
        assert not leaked, f"swarm objects leaked by the tests (now removed): {leaked}"
    finally:
        client.close()
        support.release()


@pytest.fixture
def cluster() -> DockerHostConfig:
    return DockerHostConfig(name="cluster", url=DOCKER_URL, mode="swarm")


@pytest.fixture
async def events() -> Events:
    return Events()


async def cleanup(runtime: SwarmRuntime) -> None:
    with contextlib.suppress(Exception):
        await runtime.remove_all()
    with contextlib.suppress(Exception):
        await runtime.release_unused()
    await runtime.aclose()


@pytest.fixture
async def runtime(
    swarm: Any, cluster: DockerHostConfig, events: Events
) -> AsyncIterator[SwarmRuntime]:
    rt = SwarmRuntime(new_instance_id(), [cluster], start_wait_s=30)
    await rt.start(events)
    try:
        yield rt
    finally:
        await cleanup(rt)
