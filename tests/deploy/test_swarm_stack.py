"""The daemon as a Swarm service, deployed from deploy/swarm/stack.yaml with the image built
from ./Dockerfile, on a real single-node swarm: it serves a job through runner services,
keeps its token out of `docker service inspect`, and - after the stack is removed and its
journal volume deleted, as when the task moves to another manager - the next deployment
removes the old runner and its registration instead of leaking them.

The only change to the stack file is the network: the forge simulator listens on the
host's loopback, so the daemon joins the host network instead of publishing its port.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker as docker_sdk
import pytest
import yaml

from tests.deploy.support import REPO, free_port, run, wait_for
from tests.deploy.test_stack import _http, daemon_image  # noqa: F401 - fixture
from tests.e2e.harness import SIM_TOKEN, TEST_IMAGE, Sim
from tests.swarm import support

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yaml"


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    client = docker_sdk.DockerClient(timeout=60)
    problem = support.acquire(client.api)
    client.close()
    if problem:
        pytest.skip(f"SWARM STACK TEST NOT RUN: {problem}")
    try:
        yield
    finally:
        support.release()


def _docker(*args: str, check: bool = True) -> str:
    return run(["docker", *args], check=check).stdout


def _services(instance: str) -> list[str]:
    flt = f"label=io.runner-orchestrator.instance={instance}"
    return _docker("service", "ls", "-q", "--filter", flt).split()


def test_daemon_stack_serves_a_job_and_a_lost_journal_leaks_nothing(
    swarm: None,
    daemon_image: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    instance = "rostk" + secrets.token_hex(3)
    stack = f"ro{instance}"
    port = free_port()
    sim = Sim("gitlab", SIM_TOKEN)
    config = {
        "forges": [
            {
                "kind": "gitlab",
                "name": "gitlab",
                "url": sim.url,
                "token": SIM_TOKEN,
                "projects": ["1"],
                "requests_per_minute": 600,
            }
        ],
        "pools": [
            {
                "name": "swarm",
                "labels": ["docker"],
                "image": TEST_IMAGE,
                "network": "host",
                "memory": "256m",
                "pids_limit": 256,
                "min_idle": 1,
                "ephemeral": False,
                "cooldown_s": 600,
            }
        ],
        "docker_hosts": [
            {"name": "cluster", "url": "unix:///var/run/docker.sock", "mode": "swarm"}
        ],
        "ceiling": {"allow_host_network": True},
        "poll_interval": 2,
        "gc_interval": 3,
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    secret = f"ro-config-{instance}"
    stack_doc: dict[str, Any] = yaml.safe_load(STACK_FILE.read_text())
    service = stack_doc["services"]["orchestrator"]
    service["secrets"] = [{"source": "ro-config", "target": "ro-config"}]
    stack_doc["secrets"] = {"ro-config": {"external": True, "name": secret}}
    service.pop("ports")
    service["networks"] = ["hostnet"]
    service["environment"].update({"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port)})
    stack_doc["networks"] = {"hostnet": {"external": True, "name": "host"}}
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(yaml.safe_dump(stack_doc))
    env = {
        **os.environ,
        "ORCHESTRATOR_IMAGE": daemon_image,
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "INSTANCE_ID": instance,
    }
    url = f"http://127.0.0.1:{port}"

    def deploy() -> None:
        subprocess.run(
            ["docker", "stack", "deploy", "-c", str(stack_file), stack],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        wait_for("/health of the daemon service", lambda: _http(f"{url}/health")[0] == 200, 90)

    def remove_stack() -> None:
        run(["docker", "stack", "rm", stack], check=False)
        wait_for(
            "the daemon's container to be gone",
            lambda: (
                not _docker(
                    "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}"
                ).strip()
            ),
            90,
        )

    _docker("secret", "create", secret, str(config_file))
    try:
        deploy()
        inspect = _docker("service", "inspect", f"{stack}_orchestrator")
        assert SIM_TOKEN not in inspect
        (warm,) = wait_for("the warm runner service", lambda: _services(instance), 60)
        job = sim.add_job("1", ["docker"], duration=1)
        wait_for(
            "the job to succeed on the runner service",
            lambda: any(str(j["id"]) == job and j["status"] == "success" for j in sim.jobs()),
            90,
        )
        old_forge = {str(r["id"]) for r in sim.state()["runners"]}
        assert len(old_forge) == 1

        # The task "moves": the stack goes, its node-local journal with it.
        remove_stack()
        assert _services(instance) == [warm], "runners outlive the daemon (leave mode)"
        run(["docker", "volume", "rm", f"{stack}_state"])
        deploy()
        wait_for(
            "the old runner and registration to be removed, a new warm runner to run",
            lambda: (
                warm not in _services(instance)
                and len(_services(instance)) == 1
                and not old_forge & {str(r["id"]) for r in sim.state()["runners"]}
            ),
            120,
        )
    finally:
        remove_stack()
        client = docker_sdk.DockerClient(timeout=60)
        support.leftovers(client, instance)
        client.close()
        run(["docker", "volume", "rm", f"{stack}_state"], check=False)
        run(["docker", "secret", "rm", secret], check=False)
        sim.stop()
