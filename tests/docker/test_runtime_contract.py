"""The ContainerRuntime contract, one suite over every implementation (fake and real).

Each implementation is a :class:`Impl` in ``IMPLEMENTATIONS``: how to build the runtime and
how to make a spec whose container exits with a given code. To add a runtime (Swarm,
Kubernetes), add one factory and its name to the list; every test below then runs on it.
FakeRuntime runs here too (in the docker directory, so it shares the engine fixtures and
leak check): a fake that drifts from the real engine's behaviour fails the same test.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import docker
import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    ContainerStartError,
)
from orchestrator.runtime.docker_engine import DockerRuntime
from tests.docker.conftest import Events, cleanup, new_instance_id
from tests.docker.helpers import make_spec
from tests.fakes import FakeRuntime, FakeWorld


@dataclasses.dataclass
class Impl:
    """One runtime under contract, with the two things the suite cannot do generically."""

    runtime: ContainerRuntime
    events: Events
    #: A spec for this runtime; ``exit_code`` set: its container exits with that code.
    spec: Callable[..., ContainerSpec]
    close: Callable[[], Awaitable[None]]


async def _docker(host: DockerHostConfig) -> Impl:
    runtime = DockerRuntime(new_instance_id(), [host])
    events = Events()
    await runtime.start(events)

    def spec(exit_code: int | None = None, **overrides: Any) -> ContainerSpec:
        if exit_code is not None:
            overrides["command"] = ("sh", "-c", f"echo bye; exit {exit_code}")
        return make_spec(runtime, **overrides)

    return Impl(runtime, events, spec, lambda: cleanup(runtime))


async def _fake(_host: DockerHostConfig) -> Impl:
    runtime = FakeRuntime(FakeWorld(), instance_id=new_instance_id())
    events = Events()
    await runtime.start(events)

    def spec(exit_code: int | None = None, **overrides: Any) -> ContainerSpec:
        if exit_code is not None:
            overrides["pool"] = f"exits-{exit_code}"
            runtime.exit_at_start[overrides["pool"]] = exit_code
        return make_spec(runtime, **overrides)  # type: ignore[arg-type]

    return Impl(runtime, events, spec, runtime.aclose)


async def _swarm(host: DockerHostConfig) -> Impl:
    """The Swarm runtime on the same engine, put into swarm mode for the test if it is in
    none (and left again only by whoever initialised it: tests/swarm/support.py)."""
    from orchestrator.runtime.swarm import SwarmRuntime
    from tests.swarm import support

    client = docker.DockerClient(base_url=host.url, timeout=60)
    problem = support.acquire(client.api)
    client.close()
    if problem:
        pytest.skip(f"SWARM CONTRACT NOT RUN: {problem}")
    try:
        runtime = SwarmRuntime(new_instance_id(), [host.model_copy(update={"mode": "swarm"})])
        events = Events()
        await runtime.start(events)
    except BaseException:
        support.release()  # nobody will call close(): give the swarm back now
        raise

    def spec(exit_code: int | None = None, **overrides: Any) -> ContainerSpec:
        if exit_code is not None:
            overrides["command"] = ("sh", "-c", f"echo bye; exit {exit_code}")
        return make_spec(runtime, **overrides)  # type: ignore[arg-type]

    async def close() -> None:
        try:
            await runtime.remove_all()
            await runtime.release_unused()
            await runtime.aclose()
            # The engine tears task containers down after their service is gone.
            settle = docker.DockerClient(base_url=host.url, timeout=60)
            await asyncio.to_thread(support.settle, settle, runtime.instance_id)
            settle.close()
        finally:
            support.release()

    return Impl(runtime, events, spec, close)


#: name -> factory. Add an implementation here.
IMPLEMENTATIONS: dict[str, Callable[[DockerHostConfig], Awaitable[Impl]]] = {
    "fake": _fake,
    "docker": _docker,
    "swarm": _swarm,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
async def impl(request: pytest.FixtureRequest, local_host: DockerHostConfig) -> AsyncIterator[Impl]:
    made = await IMPLEMENTATIONS[request.param](local_host)
    try:
        yield made
    finally:
        await made.close()


async def _listed(runtime: ContainerRuntime, container_id: str) -> ContainerInfo | None:
    listing = await runtime.list()
    return next((c for c in listing.containers if c.id == container_id), None)


async def _until_exited(runtime: ContainerRuntime, container_id: str) -> ContainerInfo:
    for _ in range(100):
        info = await _listed(runtime, container_id)
        if info is not None and not info.running and info.status != "created":
            return info
        await asyncio.sleep(0.2)
    raise AssertionError(f"{container_id[:12]} did not exit")


async def test_create_start_list_stop_remove(impl: Impl) -> None:
    rt = impl.runtime
    spec = impl.spec(runner_id="r-contract", forge_runner_id="42")
    created = await rt.create(spec)
    assert created.runner_id == "r-contract" and not created.running
    started = await rt.start_container(created)
    assert started.running
    listed = await _listed(rt, created.id)
    assert listed is not None and listed.running
    assert (listed.runner_id, listed.pool, listed.forge, listed.forge_runner_id) == (
        "r-contract",
        spec.pool,
        spec.forge,
        "42",
    )
    assert isinstance(await rt.logs(created.host, created.id, 10), str)
    await rt.stop(created.host, created.id, timeout_s=1)
    stopped = await _listed(rt, created.id)
    assert stopped is not None and not stopped.running
    await rt.remove(created.host, created.id)
    assert await _listed(rt, created.id) is None
    # Gone already is success, for both.
    await rt.stop(created.host, created.id)
    await rt.remove(created.host, created.id)


async def test_an_exiting_container_is_listed_with_its_exit_code(impl: Impl) -> None:
    rt = impl.runtime
    info = await rt.create(impl.spec(exit_code=3))
    await rt.start_container(info)
    ended = await _until_exited(rt, info.id)
    assert ended.exit_code == 3
    await rt.remove(info.host, info.id)


async def test_a_spec_of_another_instance_is_refused(impl: Impl) -> None:
    with pytest.raises(ContainerStartError):
        await impl.runtime.create(impl.spec(instance_id="someone-else"))
    assert (await impl.runtime.list()).containers == ()


async def test_hosts_and_placement_are_answered_without_io(impl: Impl) -> None:
    hosts = impl.runtime.hosts()
    assert hosts and all(h.ok for h in hosts)
    assert impl.runtime.placeable("linux/amd64", None) == ""


async def test_release_unused_with_nothing_running_is_idempotent(impl: Impl) -> None:
    await impl.runtime.release_unused()
    await impl.runtime.release_unused()
