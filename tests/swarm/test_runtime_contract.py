"""One Protocol, two engines: the same scenarios over the container runtime and the Swarm
runtime, on the real engine. What the reconciler relies on must hold for both.

These complement the shared suite (tests/docker/test_runtime_contract.py, which runs the
Swarm runtime too) with what it does not check: the credential reaching the runner,
another instance's runner left alone, an unknown platform refused with a reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    NoCapacity,
    RuntimeFailure,
)
from orchestrator.runtime.docker_engine import DockerRuntime
from orchestrator.runtime.swarm import SwarmRuntime
from tests.swarm.conftest import DOCKER_URL, TEST_IMAGE, new_instance_id
from tests.swarm.support import Events

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

CREDENTIAL = "glrt-contract-" + "z" * 10


def _runtime(kind: str, instance: str) -> Any:
    if kind == "container":
        return DockerRuntime(instance, [DockerHostConfig(name="box", url=DOCKER_URL)])
    return SwarmRuntime(instance, [DockerHostConfig(name="box", url=DOCKER_URL, mode="swarm")])


async def _cleanup(rt: Any) -> None:
    listing = await rt.list()
    for info in listing.containers:
        await rt.remove(info.host, info.id)
    if isinstance(rt, DockerRuntime):
        await rt.remove_network()
        await rt.remove_volumes()
    else:
        await rt.release_unused()
    await rt.aclose()


@pytest.fixture(params=["container", "swarm"])
async def rt(request: pytest.FixtureRequest, swarm: Any) -> AsyncIterator[Any]:
    runtime = _runtime(request.param, new_instance_id())
    await runtime.start(Events())
    try:
        yield runtime
    finally:
        await _cleanup(runtime)


def spec(rt: Any, command: tuple[str, ...], runner_id: str = "r1") -> ContainerSpec:
    return ContainerSpec(
        runner_id=runner_id,
        name=f"{rt.instance_id}-{runner_id}",
        instance_id=rt.instance_id,
        pool="p",
        forge="gitlab",
        forge_runner_id="42",
        image=TEST_IMAGE,
        command=command,
        credential=CREDENTIAL,
        credential_env="CI_SERVER_TOKEN",
        memory="64m",
        pids_limit=64,
    )


async def find(rt: Any, info_id: str, want: Any, timeout: float = 30) -> ContainerInfo:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = next((c for c in (await rt.list()).containers if c.id == info_id), None)
        if found is not None and want(found):
            return found
        assert loop.time() < deadline, f"never matched: {found}"
        await asyncio.sleep(0.3)


async def test_is_a_container_runtime(rt: Any) -> None:
    assert isinstance(rt, ContainerRuntime)


async def test_a_runner_runs_reads_its_credential_and_is_listed_with_its_labels(rt: Any) -> None:
    info = await rt.start_container(
        await rt.create(
            spec(rt, ("sh", "-c", '[ -n "$CI_SERVER_TOKEN" ] && echo has-cred; sleep 60'))
        )
    )
    assert info.running
    listed = await find(rt, info.id, lambda c: c.running)
    assert (listed.runner_id, listed.pool, listed.forge, listed.forge_runner_id) == (
        "r1",
        "p",
        "gitlab",
        "42",
    )
    text = ""
    for _ in range(50):
        text = await rt.logs(listed.host, listed.id)
        if "has-cred" in text:
            break
        await asyncio.sleep(0.2)
    assert "has-cred" in text and CREDENTIAL not in text


async def test_an_exit_is_seen_with_its_code_and_the_runner_is_not_running(rt: Any) -> None:
    info = await rt.start_container(await rt.create(spec(rt, ("sh", "-c", "exit 7"))))
    ended = await find(rt, info.id, lambda c: not c.running)
    assert ended.exit_code == 7 and ended.finished_at is not None


async def test_stop_then_remove_leaves_nothing_and_both_are_idempotent(rt: Any) -> None:
    info = await rt.start_container(await rt.create(spec(rt, ("sleep", "60"))))
    await rt.stop(info.host, info.id, timeout_s=2)
    assert not (await find(rt, info.id, lambda c: not c.running)).running
    await rt.remove(info.host, info.id)
    await rt.remove(info.host, info.id)  # gone already: success
    await rt.stop(info.host, info.id)  # likewise
    assert (await rt.list()).containers == ()


async def test_another_instances_runner_is_never_touched(rt: Any, swarm: Any) -> None:
    info = await rt.start_container(await rt.create(spec(rt, ("sleep", "60"))))
    kind = "container" if isinstance(rt, DockerRuntime) else "swarm"
    other = _runtime(kind, new_instance_id())
    await other.start(Events())
    try:
        assert (await other.list()).containers == ()
        with pytest.raises(RuntimeFailure):
            await other.remove(info.host, info.id)
    finally:
        await _cleanup(other)
    assert (await find(rt, info.id, lambda c: c.running)).running


async def test_an_unknown_platform_is_unplaceable_with_a_reason(rt: Any) -> None:
    assert rt.placeable("linux/amd64", None) == ""
    assert "linux/s390x" in rt.placeable("linux/s390x", None)
    with pytest.raises(NoCapacity):
        await rt.create(
            ContainerSpec(
                runner_id="r2",
                name=f"{rt.instance_id}-r2",
                instance_id=rt.instance_id,
                pool="p",
                forge="gitlab",
                forge_runner_id="43",
                image=TEST_IMAGE,
                command=("true",),
                credential=CREDENTIAL,
                credential_env="CI_SERVER_TOKEN",
                platform="linux/s390x",
            )
        )
