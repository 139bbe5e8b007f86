"""End to end on the Swarm runtime: the daemon process with a ``mode: swarm`` endpoint on a
real single-node swarm, the forge simulator, runner services whose shims take real jobs.

Runners use the host network (the simulator listens on loopback), as in the container
scenarios. Each scenario ends with no service, secret, network or container left.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scan_for_secrets
from tests.e2e.harness import (
    SIM_TOKEN,
    Daemon,
    Sim,
    all_done,
    cleanup_instance,
    containers,
    docker,
    forge_runners,
    gitlab_config,
    job_status,
    pool,
    wait_for,
)
from tests.swarm import support

pytestmark = pytest.mark.timeout(420)

CLUSTER = {"name": "cluster", "url": "unix:///var/run/docker.sock", "mode": "swarm"}


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    import docker as docker_sdk

    client = docker_sdk.DockerClient(timeout=60)
    problem = support.acquire(client.api)
    client.close()
    if problem:
        pytest.skip(f"SWARM E2E SKIPPED: {problem}")
    try:
        yield
    finally:
        support.release()


def services(instance: str, pool: str = "") -> list[str]:
    args = ["service", "ls", "-q", "--filter", f"label=io.runner-orchestrator.instance={instance}"]
    if pool:
        args += ["--filter", f"label=io.runner-orchestrator.pool={pool}"]
    return docker(*args).split()


def secrets_of(instance: str) -> list[str]:
    out = docker(
        "secret", "ls", "-q", "--filter", f"label=io.runner-orchestrator.instance={instance}"
    )
    return out.split()


@contextlib.contextmanager
def no_swarm_leaks(instance: str) -> Iterator[None]:
    """Fail if the scenario left a service, secret, network or container of ``instance``."""
    try:
        yield
    finally:
        import docker as docker_sdk

        client = docker_sdk.DockerClient(timeout=60)
        leaked = support.leftovers(client, instance)
        client.close()
        leaked += cleanup_instance(instance)
    assert not leaked, f"left behind: {leaked}"


def swarm_config(sim: Sim, pools: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return gitlab_config(sim, pools, docker_hosts=[CLUSTER], **top)


def test_s1_gitlab_job_on_a_swarm_service_then_nothing_is_left(
    swarm: None, gitlab_sim: Sim, instance: str, tmp_path: Path
) -> None:
    config = swarm_config(
        gitlab_sim,
        [
            pool("amd64", ["docker", "amd64"], ephemeral=False, cooldown_s=4),
            pool("arm64", ["docker", "arm64"], platform="linux/arm64"),
            pool("special", ["docker", "special"], constraints=["node.labels.special==true"]),
        ],
    )
    with no_swarm_leaks(instance):
        daemon = Daemon(tmp_path, instance, config, env={"SHUTDOWN_MODE": "drain"})
        try:
            job = gitlab_sim.add_job("1", ["docker", "amd64"], duration=1)
            arm = gitlab_sim.add_job("1", ["docker", "arm64"], duration=1)
            special = gitlab_sim.add_job("1", ["docker", "special"], duration=1)
            (service,) = wait_for(lambda: services(instance, "amd64"), 30, "a runner service")
            (cid,) = wait_for(lambda: containers(instance, pool="amd64"), 30, "its task container")
            # Neither the forge token nor the runner's credential shows in any inspect.
            for shown in (docker("service", "inspect", service), docker("inspect", cid)):
                assert SIM_TOKEN not in shown and "glrt-" not in shown
            assert "RUNNER_CREDENTIAL_FILE" in docker("inspect", cid)
            wait_for(lambda: job_status(gitlab_sim, job) == "success", 60, "job success")

            def waiting() -> dict[str, Any]:
                return {w["id"]: w for w in daemon.status()["waiting_jobs"]}

            # A pool no node can serve is explained, not left as a silent pending task:
            # by arch before anything is created, by the engine's own words otherwise.
            wait_for(lambda: "arch arm64" in waiting().get(arm, {}).get("detail", ""), 30, "arm64")
            wait_for(
                lambda: "no suitable node" in waiting().get(special, {}).get("detail", ""),
                60,
                "the engine's reason for the constrained pool",
                describe=waiting,
            )
            assert {waiting()[arm]["reason"], waiting()[special]["reason"]} == {"pool_unavailable"}
            hosts = daemon.status()["hosts"]
            (cluster,) = hosts
            assert cluster["mode"] == "swarm" and cluster["ok"]
            assert cluster["nodes"][0]["arch"] == "amd64"
            assert cluster["nodes"][0]["availability"] == "active"
            # After the cooldown the amd64 runner is unregistered and its service removed.
            wait_for(
                lambda: (
                    not containers(instance, pool="amd64")
                    and not any("-amd64-" in r["description"] for r in forge_runners(gitlab_sim))
                ),
                60,
                "amd64 runner retired",
            )
            runners = daemon.get("/runners")[1]["runners"]
            amd = [r for r in runners if r["pool"] == "amd64"]
            assert amd and all(r["state"] == "removed" for r in amd)
        finally:
            assert daemon.stop() == 0
        assert scan_for_secrets(daemon.process.output()) == []  # type: ignore[union-attr]
        assert services(instance) == [] and secrets_of(instance) == []


def test_s2_kill_9_mid_burst_then_restart_finishes_everything(
    swarm: None, gitlab_sim: Sim, instance: str, tmp_path: Path
) -> None:
    config = swarm_config(gitlab_sim, [pool("amd64", ["docker"], max_runners=6)])
    with no_swarm_leaks(instance):
        daemon = Daemon(tmp_path, instance, config)
        try:
            ids = [gitlab_sim.add_job("1", ["docker"], 3) for _ in range(8)]
            wait_for(lambda: len(services(instance)) >= 3, 60, "burst under way")
            daemon.kill9()
            time.sleep(1)
            daemon.start()
            wait_for(lambda: all_done(gitlab_sim, ids), 240, "every job completes", 1)
            wait_for(
                lambda: (
                    not services(instance)
                    and not containers(instance)
                    and not forge_runners(gitlab_sim)
                ),
                90,
                "no service, container or registration left",
                describe=lambda: {
                    "services": services(instance),
                    "forge_runners": forge_runners(gitlab_sim),
                },
            )
        finally:
            daemon.stop()
        assert secrets_of(instance) == []


def test_s3_a_lost_journal_leaks_nothing(
    swarm: None, gitlab_sim: Sim, instance: str, tmp_path: Path
) -> None:
    """What lets the daemon run as a Swarm service that may move to a node without its
    journal: started empty, it removes every labelled service (and its forge registration)
    it has no row for, and the forge sweep removes registrations without a runner."""
    config = swarm_config(
        gitlab_sim, [pool("warm", ["docker"], min_idle=2, ephemeral=False, cooldown_s=600)]
    )
    with no_swarm_leaks(instance):
        daemon = Daemon(
            tmp_path, instance, config, env={"SHUTDOWN_MODE": "drain", "GC_INTERVAL": "3"}
        )
        try:
            before = wait_for(
                lambda: len(services(instance)) == 2 and services(instance), 60, "2 warm runners"
            )
            wait_for(lambda: len(forge_runners(gitlab_sim)) == 2, 30, "2 registrations")
            old_forge = {str(r["id"]) for r in forge_runners(gitlab_sim)}
            daemon.kill9()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{daemon.env['STATE_PATH']}{suffix}").unlink(missing_ok=True)
            daemon.start()
            wait_for(
                lambda: (
                    not set(before) & set(services(instance))
                    and not old_forge & {str(r["id"]) for r in forge_runners(gitlab_sim)}
                ),
                90,
                "the old services and registrations are gone",
                describe=lambda: {
                    "services": services(instance),
                    "forge": forge_runners(gitlab_sim),
                },
            )
            wait_for(lambda: len(services(instance)) == 2, 60, "2 new warm runners")
            assert len(secrets_of(instance)) == 2
        finally:
            assert daemon.stop() == 0
        assert forge_runners(gitlab_sim) == []
        assert services(instance) == [] and secrets_of(instance) == []
        print(json.dumps({"old": before}))
