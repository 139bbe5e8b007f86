"""A ``read_only: true`` pool on the real engine: the root filesystem refuses writes, /tmp is
a tmpfs, and the credential still reaches the runner and never shows in ``docker inspect``:
by stdin (nothing to write into the container), or as a file (through an anonymous volume
at /run/runner-orchestrator, because the engine refuses archives into a read-only rootfs)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.runtime.docker_engine import DockerRuntime

from .helpers import SECRET, make_spec, wait_exited

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("delivery", ["stdin", "file"])
@pytest.mark.parametrize("user", [None, "1001:1001"], ids=["image-user", "non-root"])
async def test_read_only_runner_gets_its_credential_and_cannot_write_the_rootfs(
    runtime: DockerRuntime, docker_client: Any, user: str | None, delivery: str
) -> None:
    command = (
        "sh",
        "-c",
        'echo "token=$CI_SERVER_TOKEN"; touch /written 2>/dev/null || echo rootfs-read-only; '
        "touch /tmp/scratch && echo tmp-writable",
    )
    spec = make_spec(
        runtime, command=command, read_only=True, user=user, credential_delivery=delivery
    )
    info = await runtime.create(spec)
    attrs = docker_client.api.inspect_container(info.id)
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert SECRET not in repr(attrs)
    volumes = [m["Name"] for m in attrs["Mounts"] if m["Type"] == "volume"]
    assert len(volumes) == (1 if delivery == "file" else 0)
    await runtime.start_container(info)
    await wait_exited(runtime, info.id)
    logs = await runtime.logs("local", info.id)
    assert f"token={SECRET}" in logs
    assert "rootfs-read-only" in logs and "tmp-writable" in logs
    await runtime.remove("local", info.id)
    left = {v.name for v in docker_client.volumes.list()}
    assert not set(volumes) & left  # the credential volume went with the container
