"""Swarm runtime rules without an engine: config refusals, service spec, task -> runner view,
node view -> placeability, and the per-endpoint runtime choice."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.config import ConfigError, DockerHostConfig, load_settings
from orchestrator.runtime import ContainerSpec, NoCapacity, NodeStatus
from orchestrator.runtime.composite import CompositeRuntime, build_runtime
from orchestrator.runtime.docker_engine import DockerRuntime
from orchestrator.runtime.swarm import SwarmRuntime
from orchestrator.runtime.swarm_spec import (
    latest_task,
    node_status,
    nodes_reason,
    service_info,
    service_spec,
)

FORGE = [{"kind": "gitlab", "url": "https://gl.example", "token": "glpat-x"}]
SWARM = {"name": "cluster", "mode": "swarm"}


def settings(**top: Any) -> Any:
    return load_settings(forges=FORGE, **top)


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        ({"privileged": True}, "pools[0].privileged: Swarm services cannot run privileged"),
        ({"gpu": "all"}, "pools[0].gpu: 'all' cannot be expressed on Swarm"),
        ({"network": "none"}, "pools[0].network: Swarm has no 'none' network"),
    ],
)
def test_what_swarm_cannot_express_is_refused_at_config_time(
    pool: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings(
            pools=[{"name": "p", **pool}],
            docker_hosts=[SWARM],
            ceiling={"allow_privileged": True},
        )


def test_the_same_pool_is_fine_when_it_can_only_land_on_container_hosts() -> None:
    s = settings(
        pools=[{"name": "p", "privileged": True, "hosts": ["box"]}],
        docker_hosts=[SWARM, {"name": "box"}],
        ceiling={"allow_privileged": True},
    )
    assert s.pools[0].privileged


def test_constraints_need_a_swarm_endpoint_and_a_constraint_shape() -> None:
    with pytest.raises(ConfigError, match=r"pools\[0\].constraints: only for pools on mode"):
        settings(pools=[{"name": "p", "constraints": ["node.labels.ssd==true"]}])
    with pytest.raises(ConfigError, match=r"pools\[0\].constraints"):
        settings(pools=[{"name": "p", "constraints": ["rm -rf"]}], docker_hosts=[SWARM])
    ok = settings(
        pools=[{"name": "p", "constraints": ["node.labels.ssd==true"]}], docker_hosts=[SWARM]
    )
    assert ok.pools[0].constraints == ["node.labels.ssd==true"]


def test_a_swarm_endpoint_takes_no_gpu_count_of_its_own() -> None:
    with pytest.raises(ValueError, match="gpus: not used with mode swarm"):
        DockerHostConfig(name="c", mode="swarm", gpus=2)


def spec(**overrides: Any) -> ContainerSpec:
    base: dict[str, Any] = {
        "runner_id": "r1",
        "name": "ro-x-p-r1",
        "instance_id": "x",
        "pool": "p",
        "forge": "gitlab",
        "forge_runner_id": "7",
        "image": "img",
        "command": ("gitlab-runner", "run-single"),
        "credential": "glrt-fakecredential",
        "credential_env": "CI_SERVER_TOKEN",
        "memory": "512m",
        "cpus": 1.5,
        "cap_add": ("CHOWN",),
    }
    base.update(overrides)
    return ContainerSpec(**base)


def test_service_spec_keeps_the_entrypoint_hides_the_credential_and_reserves_what_it_limits() -> (
    None
):
    body = service_spec(
        spec(gpus=2, platform="linux/arm64", volumes=("cache:/cache", "/srv:/srv:ro")),
        instance_id="x",
        host="cluster",
        network="net",
        secret=("sid", "sname"),
        extra_constraints=["node.labels.ssd==true"],
    )
    task = body["TaskTemplate"]
    container = task["ContainerSpec"]
    assert "Command" not in container and container["Args"] == ["gitlab-runner", "run-single"]
    assert "glrt-fakecredential" not in repr(body)
    assert "RUNNER_CREDENTIAL_FILE=/run/runner-orchestrator/credential" in container["Env"]
    assert container["Secrets"][0]["File"]["Name"] == "/run/runner-orchestrator/credential"
    assert container["CapabilityDrop"] == ["ALL"] and container["CapabilityAdd"] == ["CHOWN"]
    assert "Privileges" not in container  # no-new-privileges needs API 1.44
    assert task["RestartPolicy"]["Condition"] == "none"
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}
    assert task["Placement"]["Constraints"] == [
        "node.platform.os==linux",
        "node.platform.arch==aarch64",
        "node.labels.ssd==true",
    ]
    limits, reservations = task["Resources"]["Limits"], task["Resources"]["Reservations"]
    assert limits["MemoryBytes"] == reservations["MemoryBytes"] == 512 * 1024**2
    assert limits["NanoCPUs"] == reservations["NanoCPUs"] == 1_500_000_000
    assert reservations["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}
    ]
    kinds = {m["Target"]: m["Type"] for m in container["Mounts"]}
    assert kinds == {"/cache": "volume", "/srv": "bind"}
    newer = service_spec(
        spec(), instance_id="x", host="c", network="n", secret=None, no_new_privileges=True
    )
    assert newer["TaskTemplate"]["ContainerSpec"]["Privileges"] == {"NoNewPrivileges": True}


def test_service_spec_refuses_what_swarm_cannot_do_even_past_config() -> None:
    for bad in (spec(privileged=True), spec(gpus="all")):
        with pytest.raises(NoCapacity):
            service_spec(bad, instance_id="x", host="c", network="n", secret=None)


def task(state: str, index: int, err: str = "", exit_code: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Err": err, "Timestamp": "2026-01-01T00:00:00.5Z"}
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": "c1", "ExitCode": exit_code}
    return {"Version": {"Index": index}, "Status": status}


SERVICE = {
    "ID": "svc1",
    "Spec": {
        "Name": "ro-x-p-r1",
        "Labels": {"io.runner-orchestrator.runner-id": "r1"},
        "Mode": {"Replicated": {"Replicas": 1}},
    },
}


def test_task_states_map_onto_the_runner_view() -> None:
    assert service_info("c", SERVICE, None).status == "pending"
    pending = service_info("c", SERVICE, task("pending", 1, "no suitable node (x)"))
    assert pending.running and pending.error == "no suitable node (x)"
    failed = service_info("c", SERVICE, task("failed", 2, "task: non-zero exit (3)", 3))
    assert not failed.running and failed.exit_code == 3 and failed.finished_at is not None
    assert service_info("c", SERVICE, task("rejected", 2, "No such image")).exit_code is None
    assert latest_task([task("failed", 2), task("running", 5)])["Status"]["State"] == "running"
    scaled = {**SERVICE, "Spec": {**SERVICE["Spec"], "Mode": {"Replicated": {"Replicas": 0}}}}
    assert service_info("c", scaled, None).status == "shutdown"


def node(arch: str, gpus: int = 0, availability: str = "active", state: str = "ready") -> Any:
    resources = [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": gpus}}] if gpus else []
    return node_status(
        {
            "ID": "n",
            "Description": {
                "Hostname": "h",
                "Platform": {"Architecture": arch},
                "Resources": {"GenericResources": resources},
            },
            "Spec": {"Availability": availability, "Role": "worker"},
            "Status": {"State": state},
        }
    )


def test_node_view_decides_arch_and_gpus_and_names_the_first_failing_filter() -> None:
    amd, arm_gpu = node("x86_64"), node("aarch64", gpus=2)
    assert (amd.arch, arm_gpu.arch, arm_gpu.gpus) == ("amd64", "arm64", 2)
    assert nodes_reason([amd, arm_gpu], "linux/arm64", 2) == ""
    assert "arch arm64" in nodes_reason([amd], "linux/arm64", None)
    assert "NVIDIA-GPU" in nodes_reason([amd, arm_gpu], "linux/amd64", 1)
    assert "no ready and active" in nodes_reason(
        [node("x86_64", availability="drain")], "linux/amd64", None
    )
    assert (
        nodes_reason(
            [NodeStatus("n", "h", "amd64", 0, "active", "ready", "manager")], "linux/amd64", None
        )
        == ""
    )


def test_the_runtime_is_chosen_per_endpoint_mode() -> None:
    box = DockerHostConfig(name="box")
    cluster = DockerHostConfig(name="cluster", mode="swarm")
    assert isinstance(build_runtime("x", [box]), DockerRuntime)
    assert isinstance(build_runtime("x", [cluster]), SwarmRuntime)
    both = build_runtime("x", [box, cluster])
    assert isinstance(both, CompositeRuntime)
    assert [h.name for h in both.hosts()] == ["box", "cluster"]
    assert [h.mode for h in both.hosts()] == ["container", "swarm"]


@pytest.mark.parametrize(("delivery", "secret"), [("stdin", True), ("file", True), ("env", False)])
def test_swarm_stdin_delivery_is_its_file_secret(delivery: str, secret: bool) -> None:
    """A service's task cannot be attached to before it starts: stdin delivery (the
    daemon's default) gets the Swarm secret file, never the env var, never the stdin
    switch (the entrypoint would wait for a line that never comes)."""
    from orchestrator.runtime.swarm_engine import Endpoint
    from orchestrator.runtime.swarm_services import create_service

    class Api:
        def __init__(self) -> None:
            self.secrets: list[str] = []
            self.template: dict[str, Any] = {}

        def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> dict[str, str]:
            self.secrets.append(name)
            return {"ID": "sid"}

        def create_service(self, task_template: dict[str, Any], **_kw: Any) -> dict[str, str]:
            self.template = task_template
            return {"ID": "svc"}

        def inspect_service(self, service_id: str) -> dict[str, str]:
            return {"ID": service_id}

    api = Api()
    client = type("Client", (), {"api": api})()
    ep = Endpoint(config=DockerHostConfig(name="c", mode="swarm"), client=client)
    ep.network_ready = True
    create_service(
        ep, spec(credential_delivery=delivery, network="n"), instance_id="x", network_name="n"
    )
    env = api.template["ContainerSpec"]["Env"]
    assert bool(api.secrets) is secret
    assert not any(e.startswith("RUNNER_CREDENTIAL_STDIN") for e in env)
    if secret:
        assert "RUNNER_CREDENTIAL_FILE=/run/runner-orchestrator/credential" in env
        assert "glrt-fakecredential" not in repr(api.template)
