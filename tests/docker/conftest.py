"""Fixtures for tests against the real Docker Engine.

* The whole directory is skipped with ONE reason when no engine answers.
* The test image is built once per session when missing (scripts/build-test-image.sh).
* Every test runtime gets an instance id starting with ``TEST_PREFIX``; at session end,
  anything labelled ``io.runner-orchestrator.managed`` with such an instance id is removed
  and reported as a failure, so a leak is both cleaned up and noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import LABEL_INSTANCE, LABEL_MANAGED, ContainerEvent
from orchestrator.runtime.docker_engine import DockerRuntime

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE = "runner-orchestrator/test-runner:latest"
TEST_PREFIX = "rotest"
#: This pytest session's own prefix: the leak check at session end looks only at objects
#: of this session, so concurrent sessions on one engine (worktrees, CI) never see or
#: remove each other's containers.
SESSION_PREFIX = TEST_PREFIX + secrets.token_hex(2)
#: The engine under test; override to point the suite elsewhere (or at nothing).
DOCKER_URL = os.environ.get("RO_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")
HERE = Path(__file__).resolve().parent


def _engine_problem() -> str:
    try:
        client = docker.DockerClient(base_url=DOCKER_URL, timeout=10)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return ""


#: "problem" -> why the engine is unusable ('' when it answers); set at collection.
_STATE: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [i for i in items if HERE in Path(str(i.fspath)).resolve().parents]
    if not ours:
        return
    problem = _STATE["problem"] = _engine_problem()
    if problem:
        skip = pytest.mark.skip(
            reason=f"DOCKER TESTS SKIPPED: no Docker Engine at {DOCKER_URL} ({problem})"
        )
        for item in ours:
            item.add_marker(skip)


def new_instance_id() -> str:
    return SESSION_PREFIX + secrets.token_hex(4)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = docker.DockerClient(base_url=DOCKER_URL, timeout=60)
    yield client
    client.close()


def _leftovers(client: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    flt = {"label": [f"{LABEL_MANAGED}"]}
    # Another session on this engine may remove its own objects between our list and the
    # SDK's per-object inspect: ignore_removed and a NotFound guard keep that from looking
    # like our failure.
    try:
        listed = (
            ("container", client.containers.list(all=True, filters=flt, ignore_removed=True)),
            ("network", client.networks.list(filters=flt)),
            ("volume", client.volumes.list(filters=flt)),
        )
    except docker.errors.NotFound:
        return _leftovers(client)
    for kind, objects in listed:
        for obj in objects:
            labels = obj.attrs.get("Labels") or (obj.attrs.get("Config") or {}).get("Labels") or {}
            if str(labels.get(LABEL_INSTANCE, "")).startswith(SESSION_PREFIX):
                found.append((kind, obj))
    return found


def _sources_digest() -> str:
    """The digest scripts/build-test-image.sh stamps on the image (same files, same order)."""
    shims = ROOT / "scripts" / "test-image"
    files = [
        ROOT / "scripts" / "build-test-image.sh",
        ROOT / "runner-image" / "entrypoint.sh",
        *sorted(shims.iterdir(), key=lambda p: p.name.encode()),
    ]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def _image_outdated(client: Any) -> bool:
    """Missing, or built from other shim sources than this checkout's."""
    try:
        image = client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        return True
    labels = image.attrs["Config"].get("Labels") or {}
    return labels.get("io.runner-orchestrator.test-image.sources") != _sources_digest()


@pytest.fixture(scope="session", autouse=True)
def _docker_session(request: pytest.FixtureRequest) -> Iterator[None]:
    """Build the image if needed; at the end remove and report leaked test objects."""
    if _STATE.get("problem", "unknown"):
        # not a docker session (no docker tests collected, or no engine)
        yield
        return
    client = docker.DockerClient(base_url=DOCKER_URL, timeout=60)
    if _image_outdated(client):
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True)
    yield
    leaked = _leftovers(client)
    for kind, obj in leaked:
        with contextlib.suppress(docker.errors.APIError):
            if kind == "container":
                obj.remove(force=True, v=True)
    for kind, obj in leaked:
        with contextlib.suppress(docker.errors.APIError):
            if kind != "container":
                obj.remove()
    client.close()
    names = [f"{kind} {getattr(obj, 'name', obj.id)}" for kind, obj in leaked]
    assert not names, f"docker objects leaked by the tests (now removed): {names}"


class Events:
    """Collects ContainerEvents handed to the runtime's callback."""

    def __init__(self) -> None:
        self.items: list[ContainerEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ContainerEvent) -> None:
        self.items.append(event)
        self._changed.set()

    async def wait_for(
        self, container_id: str, action: str, timeout: float = 5.0
    ) -> ContainerEvent:
        async def _wait() -> ContainerEvent:
            while True:
                for event in self.items:
                    if event.container_id == container_id and event.action == action:
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_wait(), timeout)


async def cleanup(runtime: DockerRuntime) -> None:
    """Remove everything the runtime created, then close it."""
    with contextlib.suppress(Exception):
        await runtime.remove_all()
    with contextlib.suppress(Exception):
        await runtime.remove_network()
    with contextlib.suppress(Exception):
        await runtime.remove_volumes()
    await runtime.aclose()


@pytest.fixture
def local_host() -> DockerHostConfig:
    return DockerHostConfig(name="local", url=DOCKER_URL, arch="amd64", gpus=0)


@pytest.fixture
async def events() -> Events:
    return Events()


@pytest.fixture
async def runtime(local_host: DockerHostConfig, events: Events) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(new_instance_id(), [local_host])
    await rt.start(events)
    try:
        yield rt
    finally:
        await cleanup(rt)
