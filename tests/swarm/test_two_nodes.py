"""Placement by the engine on a real two-node swarm.

The second node is a second Docker Engine started by this module as a plain process on
this machine (Debian's ``dockerd``, its own data and exec root, vfs storage, no bridge and
no iptables changes, host network namespace so it reaches the manager on 127.0.0.1), which
advertises one fake ``NVIDIA-GPU`` generic resource and joins the swarm as a worker. It is
removed from the swarm, stopped (by its pid) and deleted at the end of the module.

Only tasks on the host network run there (overlay networking between two engines in one
network namespace would clash on the VXLAN port), which is what the pools below use.
**Opt-in** (``RO_TEST_SECOND_ENGINE=1``), because the second engine shares the host's
network namespace: an earlier version started it with ``--bridge=none``, and dockerd then
deletes the host's ``docker0`` bridge (breaking every default-bridge container of the
first engine until it is recreated). It now gets a bridge of its own (``ro2br<hex>``,
created and deleted here) and no iptables changes; still, run it only on an engine that
no one else is using. Also skipped, loudly, when not root or no ``dockerd`` is installed.
While it runs, runner services of other tests in the same session may land on the
worker: the module keeps the node for its own duration only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import ContainerSpec, ContainerStartError
from orchestrator.runtime.swarm import SwarmRuntime
from tests.swarm.conftest import DOCKER_URL, TEST_IMAGE, cleanup, new_instance_id
from tests.swarm.support import Events

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(240)]


def _unmount_below(root: Path) -> None:
    lines = Path("/proc/mounts").read_text().splitlines()
    mounts = [line.split()[1] for line in lines if str(root) in line]
    for target in sorted(mounts, reverse=True):
        subprocess.run(["umount", target], capture_output=True, check=False)


@pytest.fixture(scope="module")
def worker(swarm: Any) -> Iterator[str]:
    """A second engine joined as a worker with one NVIDIA-GPU; yields its node id."""
    if os.environ.get("RO_TEST_SECOND_ENGINE") != "1":
        pytest.skip(
            "TWO-NODE SWARM TEST NOT RUN: set RO_TEST_SECOND_ENGINE=1 on an engine no one "
            "else uses (a second dockerd in the host network namespace)"
        )
    dockerd = shutil.which("dockerd")
    if os.geteuid() != 0 or dockerd is None or shutil.which("ip") is None:
        pytest.skip("TWO-NODE SWARM TEST NOT RUN: needs root, Debian's dockerd and iproute2")
    root = Path(tempfile.mkdtemp(prefix="ro-engine2-"))
    bridge = "ro2br" + secrets.token_hex(3)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "10.231.0.1/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    sock = root / "docker.sock"
    (root / "daemon.json").write_text("{}")  # not the host's /etc/docker/daemon.json
    log = (root / "dockerd.log").open("w")
    proc = subprocess.Popen(
        [
            dockerd,
            "--config-file", str(root / "daemon.json"),
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"),
            "-H", f"unix://{sock}",
            "--bridge", bridge, "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--storage-driver=vfs",
            "--cgroup-parent", f"/{root.name}",
            "--node-generic-resource", "NVIDIA-GPU=fake-gpu-0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    second: Any = None
    node_id = ""
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(Exception):
                second = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
                second.ping()
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip(f"TWO-NODE SWARM TEST NOT RUN: second dockerd did not start: "
                            f"{(root / 'dockerd.log').read_text()[-500:]}")  # fmt: skip
            time.sleep(0.5)
        token = swarm.swarm.attrs["JoinTokens"]["Worker"]
        second.swarm.join(
            remote_addrs=["127.0.0.1:2377"],
            join_token=token,
            listen_addr="127.0.0.1:2378",
            advertise_addr="127.0.0.1:2378",
        )
        node_id = second.info()["Swarm"]["NodeID"]
        image = subprocess.run(
            ["docker", "save", TEST_IMAGE], capture_output=True, check=True, timeout=120
        )
        second.images.load(image.stdout)
        deadline = time.monotonic() + 30
        while swarm.api.inspect_node(node_id)["Status"]["State"] != "ready":
            assert time.monotonic() < deadline, "worker never became ready"
            time.sleep(0.5)
        yield node_id
    finally:
        if second is not None:
            with contextlib.suppress(Exception):
                second.swarm.leave(force=True)
            second.close()
        if node_id:
            with contextlib.suppress(Exception):
                swarm.api.remove_node(node_id, force=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)


def gpu_spec(rt: SwarmRuntime, gpus: int) -> ContainerSpec:
    runner_id = "g" + secrets.token_hex(3)
    return ContainerSpec(
        runner_id=runner_id,
        name=f"{rt.instance_id}-{runner_id}",
        instance_id=rt.instance_id,
        pool="gpu",
        forge="gitlab",
        forge_runner_id="1",
        image=TEST_IMAGE,
        command=("sleep", "30"),
        credential="glrt-two-nodes",
        credential_env="CI_SERVER_TOKEN",
        gpus=gpus,
        network="host",
        memory="32m",
    )


async def test_the_engine_places_a_gpu_runner_on_the_node_that_has_the_gpu(
    swarm: Any, worker: str
) -> None:
    manager = swarm.info()["Swarm"]["NodeID"]
    cluster = DockerHostConfig(name="cluster", url=DOCKER_URL, mode="swarm")
    rt = SwarmRuntime(new_instance_id(), [cluster])
    await rt.start(Events())
    try:
        await rt.list()
        (host,) = rt.hosts()
        assert sorted(n.gpus for n in host.nodes) == [0, 1] and host.gpus == 1
        assert rt.placeable("linux/amd64", 1) == ""
        assert "2 or more NVIDIA-GPU" in rt.placeable("linux/amd64", 2)

        info = await rt.start_container(await rt.create(gpu_spec(rt, 1)))
        assert info.status == "running"
        (task,) = swarm.api.tasks(filters={"service": info.id})
        assert task["NodeID"] == worker, "the GPU runner must run on the GPU node"

        # Pinned by the operator to the manager, which has no GPU: the engine says why.
        pinned = await rt.create(
            dataclasses.replace(gpu_spec(rt, 1), constraints=(f"node.id=={manager}",))
        )
        with pytest.raises(ContainerStartError, match="no suitable node"):
            await rt.start_container(pinned)
        await rt.remove("cluster", pinned.id)
        await rt.remove("cluster", info.id)
        await asyncio.sleep(0)
    finally:
        await cleanup(rt)
