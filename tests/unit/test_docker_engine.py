"""DockerRuntime's pure parts, without an engine: what it would send to ``create``, the
credential archive, event and timestamp parsing, error translation."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from typing import Any

import docker.errors
import pytest
import requests.exceptions

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_RUNNER_ID,
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    ContainerStartError,
    HostUnavailable,
    RuntimeFailure,
    parse_time,
)
from orchestrator.runtime.docker_containers import dedupe
from orchestrator.runtime.docker_create import create_kwargs, credential_tar
from orchestrator.runtime.docker_engine import LABEL_HOST, DockerRuntime
from orchestrator.runtime.docker_events import to_event


def spec(**overrides: object) -> ContainerSpec:
    base: dict[str, object] = {
        "runner_id": "r1",
        "name": "ro-abc-r1",
        "instance_id": "abc",
        "pool": "p",
        "forge": "gitlab",
        "forge_runner_id": "7",
        "image": "img",
        "command": ("gitlab-runner", "run-single"),
        "credential": "glrt-SECRET",
        "credential_env": "CI_SERVER_TOKEN",
    }
    base.update(overrides)
    return ContainerSpec(**base)  # type: ignore[arg-type]


def kwargs_for(runtime: DockerRuntime, spec: ContainerSpec, host: str) -> dict[str, Any]:
    """What the runtime's create path asks ``containers.create`` for (no engine needed)."""
    return create_kwargs(
        spec, host, instance_id=runtime.instance_id, network_name=runtime.network_name
    )


@pytest.fixture
def runtime() -> DockerRuntime:
    return DockerRuntime("abc", [DockerHostConfig(name="h1"), DockerHostConfig(name="h2")])


def test_is_a_container_runtime(runtime: DockerRuntime) -> None:
    assert isinstance(runtime, ContainerRuntime)
    assert runtime.network_name == "runner-orchestrator-abc"
    assert [h.ok for h in runtime.hosts()] == [False, False]  # nothing connected yet
    assert "down" in runtime.placeable("linux/amd64", None)


def test_rejects_bad_host_lists() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DockerRuntime("abc", [])
    with pytest.raises(ValueError, match="duplicate"):
        DockerRuntime("abc", [DockerHostConfig(name="a"), DockerHostConfig(name="a")])


def test_create_kwargs_hardening_and_file_delivery(runtime: DockerRuntime) -> None:
    kwargs = kwargs_for(runtime, spec(memory="2g", cpus=1.5, cap_add=("CHOWN",)), "h1")
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["cap_add"] == ["CHOWN"]
    assert kwargs["security_opt"] == ["no-new-privileges:true"]
    assert kwargs["pids_limit"] == 4096
    assert kwargs["mem_limit"] == "2g"
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["privileged"] is False
    assert kwargs["init"] is True
    assert kwargs["auto_remove"] is False
    assert kwargs["restart_policy"] == {"Name": "no"}
    assert kwargs["volumes"] is None
    assert kwargs["network"] == "runner-orchestrator-abc"
    assert kwargs["platform"] == "linux/amd64"
    assert "device_requests" not in kwargs
    assert kwargs["labels"][LABEL_MANAGED] == "true"
    assert kwargs["labels"][LABEL_INSTANCE] == "abc"
    assert kwargs["labels"][LABEL_RUNNER_ID] == "r1"
    assert kwargs["labels"][LABEL_HOST] == "h1"
    assert kwargs["environment"] == {
        "RUNNER_CREDENTIAL_ENV": "CI_SERVER_TOKEN",
        "RUNNER_CREDENTIAL_FILE": "/run/runner-orchestrator/credential",
    }
    assert "glrt-SECRET" not in repr(kwargs)


def test_create_kwargs_env_delivery_and_options(runtime: DockerRuntime) -> None:
    kwargs = kwargs_for(
        runtime,
        spec(
            credential_delivery="env",
            env={"A": "1"},
            network="host",
            docker_socket=True,
            privileged=True,
            volumes=("cache:/cache",),
            gpus=2,
            gpu_capabilities=("gpu",),
            platform="linux/arm64",
            memory=None,
            user="1001",
        ),
        "h2",
    )
    assert kwargs["environment"] == {
        "A": "1",
        "RUNNER_CREDENTIAL_ENV": "CI_SERVER_TOKEN",
        "CI_SERVER_TOKEN": "glrt-SECRET",
    }
    assert kwargs["network_mode"] == "host"
    assert "network" not in kwargs
    assert kwargs["volumes"] == ["cache:/cache", "/var/run/docker.sock:/var/run/docker.sock"]
    assert kwargs["privileged"] is True
    assert "mem_limit" not in kwargs
    assert kwargs["user"] == "1001"
    assert kwargs["platform"] == "linux/arm64"
    (request,) = kwargs["device_requests"]
    assert (request["Driver"], request["Count"], request["Capabilities"]) == (
        "nvidia",
        2,
        [["gpu"]],
    )
    all_gpus = kwargs_for(runtime, spec(gpus="all"), "h1")["device_requests"][0]
    assert all_gpus["Count"] == -1


def test_credential_tar_layout() -> None:
    with tarfile.open(fileobj=io.BytesIO(credential_tar("s3cret"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"run/runner-orchestrator", "run/runner-orchestrator/credential"}
        assert members["run/runner-orchestrator"].isdir()
        assert members["run/runner-orchestrator"].mode == 0o777
        assert members["run/runner-orchestrator/credential"].mode == 0o444
        assert tar.extractfile("run/runner-orchestrator/credential").read() == b"s3cret"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T09:18:21.123456789Z", datetime(2026, 11, 23, 9, 18, 21, 123456, UTC)),
        ("2026-11-23T09:18:21Z", datetime(2026, 11, 23, 9, 18, 21, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_event_parsing() -> None:
    raw = {
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": "c1", "Attributes": {"exitCode": "137", LABEL_RUNNER_ID: "r9"}},
        "time": 1,
    }
    event = to_event("h1", raw)
    assert event is not None
    assert (event.host, event.container_id, event.action, event.runner_id, event.exit_code) == (
        "h1",
        "c1",
        "die",
        "r9",
        137,
    )
    assert to_event("h1", {**raw, "Action": "exec_start: sh"}) is None


def test_dedupe_prefers_the_creating_host() -> None:
    a = ContainerInfo(id="x", name="n", host="alpha", status="running")
    b = ContainerInfo(id="x", name="n", host="beta", status="running")
    assert dedupe([(a, "beta"), (b, "beta")]) == (b,)
    assert dedupe([(a, ""), (b, "")]) == (a,)


def test_error_translation(runtime: DockerRuntime) -> None:
    host = runtime._hosts["h1"]
    host.ok = True
    down = runtime._translate(host, requests.exceptions.ConnectionError("refused"), "create", "n")
    assert isinstance(down, HostUnavailable)
    assert not host.ok
    assert "refused" in host.error

    missing = docker.errors.ImageNotFound("404", explanation="No such image: img")
    assert isinstance(runtime._translate(host, missing, "create", "n"), ContainerStartError)
    api = docker.errors.APIError("500", explanation="could not select device driver")
    start = runtime._translate(host, api, "start", "n", "cid")
    assert isinstance(start, ContainerStartError)
    assert start.container_id == "cid"
    assert "could not select device driver" in str(start)
    stop = runtime._translate(host, api, "stop", "cid", "cid")
    assert type(stop) is RuntimeFailure


async def test_a_bug_of_ours_is_not_translated_into_a_runtime_error(
    runtime: DockerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only docker SDK / transport errors become RuntimeFailure. An AttributeError from our
    own code used to become ContainerStartError, then spawn backoff and pool_unavailable:
    a bug dressed up as an operational fault."""
    host = runtime._hosts["h1"]
    host.ok, host.client, host.network_ready = True, object(), True

    async def place(_spec: ContainerSpec) -> object:
        return host

    def broken(*_args: object) -> dict[str, object]:
        raise AttributeError("'NoneType' object has no attribute 'api'")

    monkeypatch.setattr(runtime, "_place", place)
    monkeypatch.setattr(runtime, "_create_sync", broken)
    with pytest.raises(AttributeError):
        await runtime.create(spec())

    def refused(*_args: object) -> dict[str, object]:
        raise docker.errors.APIError("409", explanation="name already in use")

    monkeypatch.setattr(runtime, "_create_sync", refused)
    with pytest.raises(ContainerStartError, match="name already in use"):
        await runtime.create(spec())
