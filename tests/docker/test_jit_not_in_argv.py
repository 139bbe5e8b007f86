"""The GitHub JIT config on the real engine: started the way the daemon starts a JIT runner
(file delivery, the image's entrypoint, ``run.sh``), it is in no process's command line on
the host while the runner runs, neither encoded nor the runner secret inside it. Every
local user of the host can read every command line (``ps``); the daemon used to run
``run.sh --jitconfig <secret>``."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path

import pytest

from orchestrator.runtime.docker_engine import DockerRuntime

from .helpers import jit_runner_spec, replace

pytestmark = pytest.mark.docker


def _command_lines_holding(*needles: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if any(n in text for n in needles):
            found.append(text)
    return found


async def _runner_visible(marker: str) -> bool:
    """The container's processes show in this machine's /proc (same kernel, and we see
    the host's PID namespace); otherwise the scan proves nothing."""
    for _ in range(50):
        if _command_lines_holding(marker):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_jit_config_is_in_no_command_line_on_the_host(runtime: DockerRuntime) -> None:
    runner_secret = "jit-runner-secret-" + secrets.token_hex(8)
    config = {"url": "http://127.0.0.1:9", "runner_id": 1, "name": "n", "token": runner_secret}
    jit = base64.b64encode(json.dumps(config).encode()).decode()
    marker = "--ro-test-" + secrets.token_hex(6)  # run.sh ignores an unknown flag
    spec = jit_runner_spec(runtime, jit)
    info = await runtime.create(replace(spec, command=(*spec.command, marker)))
    await runtime.start_container(info)
    try:
        # nothing answers at :9, so run.sh keeps polling until it is stopped
        if not await _runner_visible(marker):
            pytest.skip("the engine's processes are not visible in this /proc")
        for _ in range(10):  # a few polls' worth of short-lived children
            assert _command_lines_holding(jit, runner_secret) == []
            await asyncio.sleep(0.2)
    finally:
        await runtime.stop(info.host, info.id, timeout_s=2)
        await runtime.remove(info.host, info.id)
