"""The test image's shims against the real forge simulators (``tests/forgesim``), not the
stub: proves the shims and the simulators read docs/runner-contract.md the same way.

Skipped, per test, while a simulator is not in this checkout (they are built on other
branches and meet this one on main).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from orchestrator.runtime.docker_engine import DockerRuntime

from .conftest import Events
from .helpers import jit_runner_spec, make_spec, wait_exited

pytestmark = pytest.mark.docker
API_TOKEN = "sim-api-token"


def _running_sim() -> Any:
    common = pytest.importorskip("tests.forgesim.common")
    if not hasattr(common, "RunningSim"):
        pytest.skip("tests/forgesim/common.py has no RunningSim yet (simulator not merged)")
    return common.RunningSim


async def _until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def test_gitlab_shim_against_forgesim(runtime: DockerRuntime, events: Events) -> None:
    gitlab = pytest.importorskip("tests.forgesim.gitlab")
    running_sim = _running_sim()
    async with (
        running_sim(gitlab.create_app(API_TOKEN, admin=True)) as sim,
        aiohttp.ClientSession() as http,
    ):
        headers = {"PRIVATE-TOKEN": API_TOKEN}
        async with http.post(
            f"{sim.url}/api/v4/user/runners",
            json={"runner_type": "instance_type", "tag_list": "", "run_untagged": True},
            headers=headers,
        ) as resp:
            assert resp.status == 201, await resp.text()
            runner = await resp.json()
        async with http.post(
            f"{sim.url}/_sim/projects/1/jobs", json={"tags": [], "duration": 0.5}
        ) as resp:
            job_id = (await resp.json())["id"]

        command = (
            "gitlab-runner", "run-single", "--url", sim.url, "--executor", "shell",
            "--max-builds", "1", "--wait-timeout", "30",
        )  # fmt: skip
        spec = make_spec(runtime, command=command, credential=runner["token"], network="host")
        info = await runtime.start_container(await runtime.create(spec))
        died = await events.wait_for(info.id, "die", timeout=30)
        assert died.exit_code == 0, await runtime.logs("local", info.id)
        async with http.get(f"{sim.url}/_sim/state") as resp:
            state = await resp.json()
        job = next(j for j in state["jobs"] if j["id"] == job_id)
        assert job["status"] == "success"
        assert job["runner_id"] == runner["id"]


async def _github_setup(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with http.post(f"{url}/_sim/repos/acme/app") as resp:
        assert resp.status in {200, 201}, await resp.text()
    return {"Authorization": f"token {API_TOKEN}"}


async def _github_state(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/_sim/state") as resp:
        return dict(await resp.json())


async def _github_job(http: aiohttp.ClientSession, url: str, duration: float) -> int:
    async with http.post(
        f"{url}/_sim/repos/acme/app/jobs", json={"labels": ["self-hosted"], "duration": duration}
    ) as resp:
        return int((await resp.json())["id"])


async def test_github_jit_shim_against_forgesim(runtime: DockerRuntime, events: Events) -> None:
    github = pytest.importorskip("tests.forgesim.github")
    running_sim = _running_sim()
    async with running_sim(github.create_app(API_TOKEN)) as sim, aiohttp.ClientSession() as http:
        headers = await _github_setup(http, sim.url)
        async with http.post(
            f"{sim.url}/api/v3/repos/acme/app/actions/runners/generate-jitconfig",
            json={"name": "jit-1", "runner_group_id": 1, "labels": ["self-hosted"]},
            headers=headers,
        ) as resp:
            assert resp.status == 201, await resp.text()
            jit = (await resp.json())["encoded_jit_config"]
        job_id = await _github_job(http, sim.url, 0.5)

        spec = jit_runner_spec(runtime, jit)
        info = await runtime.start_container(await runtime.create(spec))
        died = await events.wait_for(info.id, "die", timeout=30)
        assert died.exit_code == 0, await runtime.logs("local", info.id)
        state = await _github_state(http, sim.url)
        job = next(j for j in state["jobs"] if j["id"] == job_id)
        assert job["status"] == "completed"
        assert job["runner_name"] == "jit-1"
        assert not [r for r in state["runners"] if r["name"] == "jit-1"]  # JIT: deleted


async def test_github_reusable_shim_against_forgesim(runtime: DockerRuntime) -> None:
    github = pytest.importorskip("tests.forgesim.github")
    running_sim = _running_sim()
    async with running_sim(github.create_app(API_TOKEN)) as sim, aiohttp.ClientSession() as http:
        headers = await _github_setup(http, sim.url)
        async with http.post(
            f"{sim.url}/api/v3/repos/acme/app/actions/runners/registration-token",
            headers=headers,
        ) as resp:
            assert resp.status == 201, await resp.text()
            reg_token = (await resp.json())["token"]
        jobs = [await _github_job(http, sim.url, 0.3), await _github_job(http, sim.url, 0.3)]

        command = (
            "/bin/sh", "-c",
            '/home/runner/config.sh --unattended --disableupdate --url "$1" --name "$2" '
            '--labels "$3" --work _work && exec /home/runner/run.sh',
            "sh", f"{sim.url}/acme/app", "reusable-1", "self-hosted,linux",
        )  # fmt: skip
        spec = make_spec(
            runtime,
            forge="github",
            command=command,
            credential=reg_token,
            credential_env="ACTIONS_RUNNER_INPUT_TOKEN",
            network="host",
        )
        info = await runtime.start_container(await runtime.create(spec))

        async def both_done() -> bool:
            state = await _github_state(http, sim.url)
            return all(j["status"] == "completed" for j in state["jobs"] if j["id"] in jobs)

        await _until(both_done, timeout=30)
        await runtime.stop("local", info.id, timeout_s=10)
        exited = await wait_exited(runtime, info.id)
        assert exited.exit_code == 0, await runtime.logs("local", info.id)
        state = await _github_state(http, sim.url)
        runner = next(r for r in state["runners"] if r["name"] == "reusable-1")
        assert runner["status"] == "offline"
