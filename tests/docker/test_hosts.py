"""Several Docker hosts: placement across live hosts, a dead host, a host coming back.

There is one engine on this machine. "alpha" and "beta" are the SAME local socket
(/var/run/docker.sock) configured under two names, which is enough to see placement
spread containers by load and ``list()`` attribute each container to the host that created
it. "ghost" points at a unix socket that does not exist (a dead endpoint); later in the
test a tiny proxy to the real socket is started at that path to show that a host that was
down is retried on later calls and rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import HostUnavailable, NoCapacity
from orchestrator.runtime import docker_hosts as hosts_module
from orchestrator.runtime.docker_engine import DockerRuntime

from .conftest import DOCKER_URL, Events, cleanup, new_instance_id
from .helpers import make_spec

pytestmark = pytest.mark.docker


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _proxy(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    engine_r, engine_w = await asyncio.open_unix_connection(DOCKER_URL.removeprefix("unix://"))
    await asyncio.gather(_pipe(client_r, engine_w), _pipe(engine_r, client_w))


async def test_two_hosts_and_a_dead_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(hosts_module, "HOST_RETRY_S", 0.0)
    ghost_sock = tmp_path / "ghost.sock"
    hosts = [
        DockerHostConfig(name="alpha", url=DOCKER_URL, max_containers=2),
        DockerHostConfig(name="beta", url=DOCKER_URL, max_containers=2),
        DockerHostConfig(name="ghost", url=f"unix://{ghost_sock}", max_containers=5),
    ]
    rt = DockerRuntime(new_instance_id(), hosts)
    events = Events()
    await rt.start(events)
    proxy = None
    try:
        status = {h.name: h for h in rt.hosts()}
        assert status["alpha"].ok
        assert status["beta"].ok
        assert not status["ghost"].ok
        assert status["ghost"].error  # says why, for /status
        assert "down" in rt.placeable("linux/amd64", None, ("ghost",))
        assert rt.placeable("linux/amd64", None) == ""

        # least loaded first: alpha, then beta, then alpha again
        first = await rt.create(make_spec(rt))
        second = await rt.create(make_spec(rt))
        third = await rt.create(make_spec(rt))
        assert [first.host, second.host, third.host] == ["alpha", "beta", "alpha"]

        listing = await rt.list()
        assert listing.unreachable == frozenset({"ghost"})
        placed = {c.id: c.host for c in listing.containers}
        assert placed == {first.id: "alpha", second.id: "beta", third.id: "alpha"}
        with pytest.raises(HostUnavailable):
            await rt.logs("ghost", first.id)

        # both live hosts at capacity after one more (ghost is down): refused, with reason
        await rt.create(make_spec(rt))
        with pytest.raises(NoCapacity, match="full"):
            await rt.create(make_spec(rt, hosts=("alpha", "beta")))
        assert "full" in rt.placeable("linux/amd64", None, ("alpha", "beta"))

        # the ghost endpoint comes to life: the next call retries it and it takes work
        proxy = await asyncio.start_unix_server(_proxy, path=str(ghost_sock))
        listing = await rt.list()
        assert listing.unreachable == frozenset()
        ghost = {h.name: h for h in rt.hosts()}["ghost"]
        assert ghost.ok
        assert ghost.error == ""
        fifth = await rt.create(make_spec(rt))
        assert fifth.host == "ghost"
        assert {c.host for c in (await rt.list()).containers} == {"alpha", "beta", "ghost"}
    finally:
        await cleanup(rt)
        if proxy is not None:
            proxy.close()
            await proxy.wait_closed()
