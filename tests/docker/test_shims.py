"""The test image's runner shims, run by DockerRuntime with the production command lines
(docs/runner-contract.md), against a stub of the forge simulator's runner endpoints on
127.0.0.1 (the containers use host networking to reach it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from orchestrator.runtime.docker_engine import DockerRuntime

from .conftest import Events
from .helpers import jit_runner_spec, make_spec, wait_exited
from .stubforge import StubForge

pytestmark = pytest.mark.docker


@pytest.fixture
async def forge() -> AsyncIterator[StubForge]:
    stub = StubForge()
    await stub.start()
    yield stub
    await stub.stop()


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_gitlab_runner_single_job(
    runtime: DockerRuntime, forge: StubForge, events: Events
) -> None:
    token = "glrt-shim-test-token"
    forge.gitlab_tokens.add(token)
    job_id = forge.add_gitlab_job(duration=0.5)
    command = (
        "gitlab-runner", "run-single", "--url", forge.url, "--executor", "shell",
        "--max-builds", "1", "--wait-timeout", "30",
    )  # fmt: skip
    spec = make_spec(runtime, command=command, credential=token, network="host")
    info = await runtime.start_container(await runtime.create(spec))

    died = await events.wait_for(info.id, "die", timeout=20)
    assert died.exit_code == 0, await runtime.logs("local", info.id)
    assert forge.job_states[job_id] == "success"
    assert forge.paths("POST")[0] == "/api/v4/runners/verify"
    assert ("PUT", f"/api/v4/jobs/{job_id}", 200) in forge.calls
    logs = await runtime.logs("local", info.id)
    assert "max-builds reached" in logs
    assert token not in logs


async def test_gitlab_runner_wait_timeout_and_sigterm(
    runtime: DockerRuntime, forge: StubForge
) -> None:
    token = "glrt-shim-idle"
    forge.gitlab_tokens.add(token)
    idle = (
        "gitlab-runner", "run-single", "--url", forge.url, "--executor", "shell",
        "--max-builds", "0", "--wait-timeout", "1",
    )  # fmt: skip
    info = await runtime.start_container(
        await runtime.create(make_spec(runtime, command=idle, credential=token, network="host"))
    )
    exited = await wait_exited(runtime, info.id, timeout=15)
    assert exited.exit_code == 0
    assert "no job for 1s" in await runtime.logs("local", info.id)

    # a long job, interrupted: the job is reported failed, the runner exits 0
    job_id = forge.add_gitlab_job(duration=60)
    busy = (*idle[:-1], "300")
    info = await runtime.start_container(
        await runtime.create(make_spec(runtime, command=busy, credential=token, network="host"))
    )
    await _until(lambda: forge.job_states.get(job_id) == "running")
    await runtime.stop("local", info.id, timeout_s=10)
    exited = await wait_exited(runtime, info.id)
    assert exited.exit_code == 0, await runtime.logs("local", info.id)
    assert forge.job_states[job_id] == "failed"


async def test_github_jit_runner(runtime: DockerRuntime, forge: StubForge, events: Events) -> None:
    jit = forge.jit_config("jit-runner-1")
    job_id = forge.add_github_job(duration=0.5)
    spec = jit_runner_spec(runtime, jit)
    info = await runtime.start_container(await runtime.create(spec))
    died = await events.wait_for(info.id, "die", timeout=20)
    assert died.exit_code == 0, await runtime.logs("local", info.id)
    assert forge.completed == {job_id: "success"}
    assert "ephemeral runner done after one job" in await runtime.logs("local", info.id)


async def test_github_reusable_runner(runtime: DockerRuntime, forge: StubForge) -> None:
    forge.registration_tokens.add("REGTOKEN123")
    jobs = [forge.add_github_job(duration=0.3), forge.add_github_job(duration=0.3)]
    url = f"{forge.url}/acme/app"
    command = (
        "/bin/sh", "-c",
        '/home/runner/config.sh --unattended --disableupdate --url "$1" --name "$2" '
        '--labels "$3" --work _work && exec /home/runner/run.sh',
        "sh", url, "reusable-1", "self-hosted,linux",
    )  # fmt: skip
    spec = make_spec(
        runtime,
        forge="github",
        command=command,
        credential="REGTOKEN123",
        credential_env="ACTIONS_RUNNER_INPUT_TOKEN",
        network="host",
    )
    info = await runtime.start_container(await runtime.create(spec))
    await _until(lambda: len(forge.completed) == 2)
    assert forge.completed == dict.fromkeys(jobs, "success")
    registered = next(r for r in forge.runners.values() if r["name"] == "reusable-1")
    assert registered["labels"] == "self-hosted,linux"

    await runtime.stop("local", info.id, timeout_s=10)
    exited = await wait_exited(runtime, info.id)
    assert exited.exit_code == 0, await runtime.logs("local", info.id)
    assert forge.offline == [registered["id"]]
    assert ("POST", "/_runner/offline", 200) in forge.calls
