"""Spec builders and polling helpers shared by the docker tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runtime import ContainerInfo, ContainerSpec
from orchestrator.runtime.docker_engine import DockerRuntime

TEST_IMAGE = "runner-orchestrator/test-runner:latest"
SECRET = "glrt-s3cr3t-value-" + "x" * 8


def make_spec(runtime: DockerRuntime, **overrides: Any) -> ContainerSpec:
    runner_id = overrides.pop("runner_id", "r-" + secrets.token_hex(3))
    base: dict[str, Any] = {
        "runner_id": runner_id,
        "name": f"{runtime.instance_id}-{runner_id}",
        "instance_id": runtime.instance_id,
        "pool": "default",
        "forge": "gitlab",
        "forge_runner_id": "4711",
        "image": TEST_IMAGE,
        "command": ("sleep", "30"),
        "credential": SECRET,
        "credential_env": "CI_SERVER_TOKEN",
        "memory": "64m",
        "pids_limit": 128,
    }
    base.update(overrides)
    return ContainerSpec(**base)


async def wait_exited(
    runtime: DockerRuntime, container_id: str, timeout: float = 20.0
) -> ContainerInfo:
    """Poll list() until the container has exited."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        listing = await runtime.list()
        for info in listing.containers:
            if info.id == container_id and info.status in {"exited", "dead"}:
                return info
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"container {container_id[:12]} did not exit in {timeout}s")
        await asyncio.sleep(0.2)


def jit_runner_spec(runtime: DockerRuntime, jit: str) -> ContainerSpec:
    """A GitHub JIT runner exactly as the daemon starts one, on the host network."""
    return make_spec(
        runtime,
        forge="github",
        command=("/home/runner/run.sh",),
        credential=jit,
        credential_env="ACTIONS_RUNNER_INPUT_JITCONFIG",
        network="host",
    )


def replace(spec: ContainerSpec, **changes: Any) -> ContainerSpec:
    return dataclasses.replace(spec, **changes)


@contextlib.contextmanager
def listening_server(argv: list[str], port: int, log: Path, what: str) -> Iterator[None]:
    """Run a loopback server (sshd, socat...) until it accepts on ``port``; stop it after.
    A server that exits or does not listen within 10 s fails the test with its log."""
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            server.wait(10)
            pytest.fail(f"{what} did not start: {log.read_text()}")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.terminate()
        server.wait(10)


async def logs_until(rt: DockerRuntime, host: str, cid: str, text: str) -> str:
    """The container's last log lines once they hold ``text`` (or after 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        logs = await rt.logs(host, cid, 20)
        if text in logs or time.monotonic() > deadline:
            return logs
        await asyncio.sleep(0.1)
