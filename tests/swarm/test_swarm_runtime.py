"""The Swarm runtime on a real single-node swarm: what a runner's service looks like,
how its credential arrives, how its end reads, and what is left afterwards (nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from typing import Any

import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_FORGE,
    LABEL_FORGE_RUNNER_ID,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    ContainerInfo,
    ContainerSpec,
    ContainerStartError,
    NoCapacity,
    RuntimeFailure,
    swarm_engine,
)
from orchestrator.runtime.swarm import SwarmRuntime
from tests.swarm.conftest import DOCKER_URL, TEST_IMAGE, cleanup, new_instance_id
from tests.swarm.support import Events

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

SECRET = "glrt-swarm-s3cr3t-" + "y" * 8
CRED_OK = "cred-" + hashlib.sha256(SECRET.encode()).hexdigest()[:16]


def make_spec(runtime: SwarmRuntime, **overrides: Any) -> ContainerSpec:
    runner_id = overrides.pop("runner_id", "r" + secrets.token_hex(3))
    base: dict[str, Any] = {
        "runner_id": runner_id,
        "name": f"{runtime.instance_id}-{runner_id}",
        "instance_id": runtime.instance_id,
        "pool": "default",
        "forge": "gitlab",
        "forge_runner_id": "4711",
        "image": TEST_IMAGE,
        # The image's entrypoint reads the credential file into CI_SERVER_TOKEN (contract);
        # the runner prints a digest of it, so nothing in argv or logs is the secret.
        "command": (
            "sh",
            "-c",
            'echo "cred-$(printf %s "$CI_SERVER_TOKEN" | sha256sum | cut -c1-16)"; sleep 60',
        ),
        "credential": SECRET,
        "credential_env": "CI_SERVER_TOKEN",
        "memory": "64m",
        "pids_limit": 128,
    }
    base.update(overrides)
    return ContainerSpec(**base)


async def until(runtime: SwarmRuntime, service_id: str, predicate: Any, timeout: float = 30) -> Any:
    """Poll list() until ``predicate(info)``; clamped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        listing = await runtime.list()
        info = next((c for c in listing.containers if c.id == service_id), None)
        if info is not None and predicate(info):
            return info
        if loop.time() > deadline:
            raise AssertionError(f"service {service_id[:12]} never matched (last: {info})")
        await asyncio.sleep(0.3)


def task_container(swarm: Any, service_id: str) -> dict[str, Any]:
    (task,) = swarm.api.tasks(filters={"service": service_id})
    return dict(swarm.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"]))


async def test_runner_service_runs_with_the_credential_as_a_secret_no_inspect_shows(
    runtime: SwarmRuntime, swarm: Any
) -> None:
    spec = make_spec(runtime)
    created = await runtime.create(spec)
    assert created.status == "created" and not created.running and created.host == "cluster"
    info = await runtime.start_container(created)
    assert info.status == "running" and info.running

    service = swarm.api.inspect_service(info.id)
    container = task_container(swarm, info.id)
    (secret_ref,) = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    secret = swarm.api.inspect_secret(secret_ref["SecretID"])
    for shown in (service, container, secret):
        assert SECRET not in json.dumps(shown)
    env = container["Config"]["Env"]
    assert "RUNNER_CREDENTIAL_FILE=/run/runner-orchestrator/credential" in env
    # The same labels on service, task container and secret.
    expected = {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: runtime.instance_id,
        LABEL_POOL: "default",
        LABEL_FORGE: "gitlab",
        LABEL_FORGE_RUNNER_ID: "4711",
        LABEL_RUNNER_ID: spec.runner_id,
    }
    for labels in (
        service["Spec"]["Labels"],
        container["Config"]["Labels"],
        secret["Spec"]["Labels"],
    ):
        assert expected.items() <= labels.items()
    # Hardening as for containers: all capabilities dropped, pids and memory capped, init.
    host_config = container["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["PidsLimit"] == 128
    assert host_config["Memory"] == 64 * 1024 * 1024 and host_config["Init"] is True
    # The instance's overlay network is labelled too.
    (network,) = swarm.api.networks(names=[runtime.network_name])
    assert network["Labels"][LABEL_INSTANCE] == runtime.instance_id

    logs = ""
    for _ in range(50):
        logs = await runtime.logs("cluster", info.id)
        if CRED_OK in logs:
            break
        await asyncio.sleep(0.2)
    assert CRED_OK in logs and SECRET not in logs

    await runtime.stop("cluster", info.id, timeout_s=10)
    stopped = await until(runtime, info.id, lambda i: not i.running)
    assert stopped.status == "shutdown" and stopped.exit_code is not None

    await runtime.remove("cluster", info.id)
    assert swarm.api.services(filters={"id": info.id}) == []
    assert swarm.api.secrets(filters={"label": f"{LABEL_RUNNER_ID}={spec.runner_id}"}) == []
    assert (await runtime.list()).containers == ()


@pytest.mark.parametrize(
    ("script", "status", "exit_code", "error"),
    [
        ("exit 0", "complete", 0, ""),
        ("exit 3", "failed", 3, "task: non-zero exit (3)"),
    ],
)
async def test_a_task_that_ends_reads_as_ended_with_its_exit_code_and_the_engines_error(
    runtime: SwarmRuntime, script: str, status: str, exit_code: int, error: str
) -> None:
    info = await runtime.start_container(
        await runtime.create(make_spec(runtime, command=("sh", "-c", script)))
    )
    ended = await until(runtime, info.id, lambda i: i.status == status)
    assert not ended.running
    assert ended.exit_code == exit_code and ended.error == error
    assert ended.finished_at is not None
    await runtime.remove("cluster", info.id)


async def test_the_engine_never_restarts_a_runner(runtime: SwarmRuntime, swarm: Any) -> None:
    info = await runtime.start_container(
        await runtime.create(make_spec(runtime, command=("sh", "-c", "exit 1")))
    )
    await until(runtime, info.id, lambda i: i.status == "failed")
    await asyncio.sleep(3)  # would be enough for the engine's default restart policy
    assert len(swarm.api.tasks(filters={"service": info.id})) == 1
    await runtime.remove("cluster", info.id)


async def test_a_pool_no_node_can_serve_fails_with_the_engines_reason(
    swarm: Any, cluster: DockerHostConfig, events: Events
) -> None:
    """Operator constraints no node satisfies: not a silent pending task, but the engine's
    own 'no suitable node' reason, which the reconciler turns into pool_unavailable."""
    rt = SwarmRuntime(new_instance_id(), [cluster])
    await rt.start(events)
    try:
        created = await rt.create(make_spec(rt, constraints=("node.labels.gpu==true",)))
        with pytest.raises(ContainerStartError, match="no suitable node") as caught:
            await rt.start_container(created)
        assert caught.value.container_id == created.id and caught.value.host == "cluster"
        await rt.remove("cluster", created.id)
    finally:
        await cleanup(rt)


async def test_a_platform_no_node_has_is_unplaceable_before_anything_is_created(
    runtime: SwarmRuntime, swarm: Any
) -> None:
    assert runtime.placeable("linux/amd64", None) == ""
    reason = runtime.placeable("linux/arm64", None)
    assert "no ready swarm node of arch arm64" in reason
    assert "NVIDIA-GPU" in runtime.placeable("linux/amd64", 1)
    with pytest.raises(NoCapacity, match="arm64"):
        await runtime.create(make_spec(runtime, platform="linux/arm64"))
    assert swarm.api.services(filters={"label": f"{LABEL_INSTANCE}={runtime.instance_id}"}) == []


async def test_a_missing_image_is_a_start_error_naming_it(runtime: SwarmRuntime) -> None:
    created = await runtime.create(make_spec(runtime, image="runner-orchestrator/absent:nope"))
    with pytest.raises(ContainerStartError, match="absent:nope"):
        await runtime.start_container(created)
    await runtime.remove("cluster", created.id)


async def test_a_restarted_runtime_adopts_its_services_and_never_touches_others(
    swarm: Any, cluster: DockerHostConfig, events: Events
) -> None:
    instance = new_instance_id()
    first = SwarmRuntime(instance, [cluster])
    await first.start(events)
    info = await first.start_container(await first.create(make_spec(first)))
    await first.aclose()  # the daemon stops; the service keeps running

    second = SwarmRuntime(instance, [cluster])
    other = SwarmRuntime(new_instance_id(), [cluster])
    await second.start(events)
    await other.start(events)
    try:
        (adopted,) = (await second.list()).containers
        assert adopted.id == info.id and adopted.running and adopted.runner_id == info.runner_id
        assert (await other.list()).containers == ()
        with pytest.raises(RuntimeFailure, match="not managed by instance"):
            await other.remove("cluster", info.id)
        assert (await second.list()).containers[0].running
    finally:
        await cleanup(second)
        await cleanup(other)


async def test_task_container_events_nudge_with_the_service_id(
    runtime: SwarmRuntime, events: Events
) -> None:
    info = await runtime.start_container(
        await runtime.create(make_spec(runtime, command=("sh", "-c", "exit 0")))
    )
    event = await events.wait_for(info.id, "die")
    assert event.runner_id == info.runner_id and event.host == "cluster"
    await runtime.remove("cluster", info.id)
    await events.wait_for(info.id, "destroy")


async def test_status_shows_the_swarm_endpoint_with_its_nodes(runtime: SwarmRuntime) -> None:
    await runtime.list()
    (host,) = runtime.hosts()
    assert host.mode == "swarm" and host.ok and host.arch == "amd64"
    (node,) = host.nodes
    assert (node.arch, node.availability, node.state, node.role) == (
        "amd64",
        "active",
        "ready",
        "manager",
    )
    assert node.gpus == 0


async def test_a_secret_left_by_a_crash_between_secret_and_service_is_swept(
    runtime: SwarmRuntime, swarm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(runtime)
    labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: runtime.instance_id}
    orphan = swarm.api.create_secret(f"{spec.name}-credential-x", b"left", labels=labels)
    await runtime.list()
    assert swarm.api.secrets(filters={"id": orphan["ID"]}), "young secrets are left alone"
    monkeypatch.setattr(swarm_engine, "SECRET_GRACE_S", 0.0)
    await runtime.list()
    assert swarm.api.secrets(filters={"id": orphan["ID"]}) == []


async def test_an_engine_that_is_no_swarm_manager_is_down_not_fatal(events: Events) -> None:
    dead = DockerHostConfig(name="gone", url="unix:///nonexistent/docker.sock", mode="swarm")
    rt = SwarmRuntime(new_instance_id(), [dead])
    await rt.start(events)
    try:
        listing = await rt.list()
        assert listing.unreachable == frozenset({"gone"})
        (host,) = rt.hosts()
        assert not host.ok and host.error
        assert "gone" in rt.placeable("linux/amd64", None)
    finally:
        await rt.aclose()


def test_container_info_reads_swarm_pre_running_states_as_live() -> None:
    for state in ("pending", "assigned", "preparing", "starting", "running"):
        assert ContainerInfo(id="s", name="n", host="h", status=state).running
    for state in ("complete", "failed", "rejected", "shutdown", "orphaned"):
        assert not ContainerInfo(id="s", name="n", host="h", status=state).running


async def test_one_engine_serving_both_modes_lists_each_runner_once(swarm: Any) -> None:
    """The task container carries the runner labels too; the container side must not
    list it as a second runner (or remove it as an orphan)."""
    from orchestrator.runtime.composite import build_runtime

    instance = new_instance_id()
    box = DockerHostConfig(name="box", url=DOCKER_URL)
    cluster = DockerHostConfig(name="cluster", url=box.url, mode="swarm")
    rt: Any = build_runtime(instance, [box, cluster])
    await rt.start(Events())
    try:
        spec = make_spec(rt, hosts=("cluster",))
        info = await rt.start_container(await rt.create(spec))
        assert info.host == "cluster" and info.running
        listing = await rt.list()
        assert [(c.host, c.runner_id) for c in listing.containers] == [("cluster", spec.runner_id)]
        assert {h.mode for h in rt.hosts()} == {"container", "swarm"}
        await rt.remove("cluster", info.id)
    finally:
        for left in (await rt.list()).containers:
            await rt.remove(left.host, left.id)
        await rt.release_unused()
        await rt.aclose()
