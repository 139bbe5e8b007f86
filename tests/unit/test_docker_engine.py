"""DockerRuntime's pure parts, without an engine: what it would send to ``create``, the
credential archive, event and timestamp parsing, error translation."""

from __future__ import annotations

import io
import socket
import tarfile
from datetime import UTC, datetime
from typing import Any

import docker.errors
import docker.models.containers
import docker.types
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
from orchestrator.runtime.docker_create import (
    StdinDelivery,
    create_kwargs,
    create_sync,
    credential_tar,
    split_create,
    start_sync,
)
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
    kwargs = kwargs_for(
        runtime,
        spec(credential_delivery="file", memory="2g", cpus=1.5, cap_add=("CHOWN",)),
        "h1",
    )
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
    assert (kwargs["detach"], kwargs["stdin_open"]) == (True, False)


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
    assert (kwargs["detach"], kwargs["stdin_open"]) == (True, False)
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


def test_stdin_delivery_is_the_default_and_asks_for_stdin_once(runtime: DockerRuntime) -> None:
    """Stdin delivery: the container env says so, the credential is nowhere in what the
    engine is sent, and the config the SDK builds has stdin open with StdinOnce (the
    engine then closes the container's stdin when the daemon's attach ends)."""
    kwargs = kwargs_for(runtime, spec(), "h1")
    assert kwargs["environment"] == {
        "RUNNER_CREDENTIAL_ENV": "CI_SERVER_TOKEN",
        "RUNNER_CREDENTIAL_STDIN": "1",
    }
    assert (kwargs["detach"], kwargs["stdin_open"]) == (False, True)
    assert kwargs["volumes"] is None  # no credential volume, even read-only
    assert kwargs_for(runtime, spec(read_only=True), "h1")["volumes"] is None
    # what the SDK turns these kwargs into (the same conversion containers.create does)
    args = docker.models.containers._create_container_args(dict(kwargs, version="1.41"))
    config = docker.types.ContainerConfig(
        "1.41",
        **{k: v for k, v in args.items() if k not in {"name", "platform"}},
    )
    assert (config["OpenStdin"], config["StdinOnce"], config["Tty"]) == (True, True, False)
    assert "glrt-SECRET" not in repr(args) + repr(config)
    # the hardening is the same in every mode
    file_kwargs = kwargs_for(runtime, spec(credential_delivery="file"), "h1")
    for key in ("cap_drop", "security_opt", "pids_limit", "init", "restart_policy"):
        assert kwargs[key] == file_kwargs[key]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"read_only": True},
        {"credential_delivery": "file", "read_only": True, "memory": "2g", "cpus": 1.5},
        {"credential_delivery": "env", "network": "host", "docker_socket": True},
        {"volumes": ("cache:/cache", "/srv/data:/data:ro"), "gpus": 2, "user": "1001"},
        {"network": "custom", "cap_add": ("CHOWN",), "privileged": True, "gpus": "all"},
    ],
)
def test_the_low_level_create_asks_the_engine_what_the_sdk_would(
    runtime: DockerRuntime, overrides: dict[str, object]
) -> None:
    """The runtime creates through the low-level API (one engine call; the SDK's
    ``containers.create`` inspects afterwards). Its request must be the one the SDK
    builds from the same options: the SDK's own conversion is the oracle here."""
    kwargs = kwargs_for(runtime, spec(**overrides), "h1")
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    ours, host, network = split_create(dict(kwargs))
    networking = (
        api.create_networking_config({network: api.create_endpoint_config()}) if network else None
    )
    theirs = docker.models.containers._create_container_args(dict(kwargs, version="1.41"))
    for args in (ours, theirs):
        assert (args.pop("name"), args.pop("platform")) == (spec().name, kwargs["platform"])
    mine = docker.types.ContainerConfig(
        "1.41", **ours, host_config=api.create_host_config(**host), networking_config=networking
    )
    sdk = docker.types.ContainerConfig("1.41", **theirs)
    assert {k: v for k, v in mine.items() if k != "NetworkingConfig"} == {
        k: v for k, v in sdk.items() if k != "NetworkingConfig"
    }
    if network:  # the SDK sends {network: None}; the engine's documented shape is this
        assert mine["NetworkingConfig"] == {"EndpointsConfig": {network: {}}}
    else:
        assert mine.get("NetworkingConfig") is None


def test_an_option_on_neither_side_of_the_split_is_a_bug() -> None:
    with pytest.raises(KeyError, match="shm_size"):
        split_create({"image": "img", "shm_size": "1g"})


def _delivery(credential: str = "glrt-SECRET") -> tuple[StdinDelivery, socket.socket]:
    ours, engine = socket.socketpair()
    return StdinDelivery("cid", ours.makefile("rwb", buffering=0), credential), engine


def _read_all(engine: socket.socket) -> bytes:
    engine.settimeout(5)
    data = b""
    while chunk := engine.recv(4096):
        data += chunk
    return data


def test_stdin_delivery_writes_one_line_then_end_of_file() -> None:
    delivery, engine = _delivery()
    delivery.send()
    assert delivery.closed
    assert _read_all(engine) == b"glrt-SECRET\n"  # then EOF: the connection is closed
    delivery.close()  # idempotent
    with pytest.raises(ContainerStartError, match="closed before"):
        delivery.send()


def test_stdin_delivery_closed_unwritten_gives_end_of_file_and_a_closed_socket() -> None:
    """A daemon that dies (or a start that fails) before the write: the engine sees the
    connection end with nothing written, so the entrypoint reads an empty line."""
    ours, engine = socket.socketpair()
    delivery = StdinDelivery("cid", ours.makefile("rwb", buffering=0), "glrt-SECRET")
    delivery.close()
    assert _read_all(engine) == b""
    assert ours.fileno() == -1  # the descriptor itself, not just the file object


def test_stdin_delivery_write_failure_is_a_start_error() -> None:
    delivery, engine = _delivery()
    engine.close()
    with pytest.raises(ContainerStartError, match="could not write the credential"):
        delivery.send()  # a unix socket whose peer is gone: EPIPE at once
    delivery.close()
    assert delivery.closed


class _Client:
    """Enough of a DockerClient for the create and start paths (the low-level API the
    runtime calls); records the calls."""

    def __init__(self, *, attach: Exception | None = None, start: Exception | None = None):
        self.calls: list[str] = []
        self.attach_error, self.start_error = attach, start
        self.sockets: list[socket.socket] = []
        self.engine: list[socket.socket] = []
        self.created: list[dict[str, Any]] = []
        self.api = self

    def close(self) -> None:
        self.calls.append("close")

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return {"host_config": kwargs}

    def create_endpoint_config(self) -> dict[str, Any]:
        return {}

    def create_networking_config(self, endpoints: dict[str, Any]) -> dict[str, Any]:
        return {"EndpointsConfig": endpoints}

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append("create")
        self.created.append(kwargs)
        return {"Id": "cid"}

    def put_archive(self, *_args: object) -> bool:
        self.calls.append("put_archive")
        return True

    def remove_container(self, *_args: object, **_kwargs: object) -> None:
        self.calls.append("remove")

    def attach_socket(self, container_id: str, params: dict[str, int]) -> Any:
        self.calls.append(f"attach {sorted(params.items())}")
        if self.attach_error is not None:
            raise self.attach_error
        ours, engine = socket.socketpair()
        self.sockets.append(ours)
        self.engine.append(engine)
        return ours.makefile("rwb", buffering=0)

    def start(self, container_id: str) -> None:
        self.calls.append("start")
        if self.start_error is not None:
            raise self.start_error


def _create(
    client: _Client, **overrides: object
) -> tuple[str, dict[str, str], StdinDelivery | None]:
    return create_sync(client, spec(**overrides), "h1", instance_id="abc", network_name="n")


def test_create_attaches_stdin_before_start_and_start_writes_then_closes() -> None:
    """Stdin delivery costs the engine four calls: create, attach, start and the write;
    no inspect (the runtime knows every field of the new container but its id)."""
    client = _Client()
    container_id, labels, delivery = _create(client)
    assert (container_id, labels[LABEL_RUNNER_ID], labels[LABEL_HOST]) == ("cid", "r1", "h1")
    assert delivery is not None
    assert client.calls == ["create", "attach [('stdin', 1), ('stream', 1)]"]
    start_sync(client, "cid", delivery)
    assert client.calls[2:] == ["start"]
    assert delivery.closed
    assert client.sockets[0].fileno() == -1
    assert _read_all(client.engine[0]) == b"glrt-SECRET\n"


def test_a_failed_attach_removes_the_container() -> None:
    """Same rule as a refused credential file: never a container left half made."""
    client = _Client(attach=docker.errors.APIError("500", explanation="attach failed"))
    with pytest.raises(docker.errors.APIError):
        _create(client)
    assert client.calls[-1] == "remove"


def test_a_failed_start_closes_the_delivery_unwritten() -> None:
    client = _Client(start=docker.errors.APIError("500", explanation="exec format error"))
    _id, _labels, delivery = _create(client)
    assert delivery is not None
    with pytest.raises(docker.errors.APIError):
        start_sync(client, "cid", delivery)
    assert delivery.closed
    assert client.sockets[0].fileno() == -1
    assert _read_all(client.engine[0]) == b""  # never written: the container never ran


def test_file_and_env_delivery_hold_no_stdin() -> None:
    client = _Client()
    assert _create(client, credential_delivery="file")[2] is None
    assert "put_archive" in client.calls
    assert _create(client, credential_delivery="env")[2] is None
    assert not any(c.startswith("attach") for c in client.calls)


async def test_the_runtime_closes_held_deliveries_on_remove_and_aclose(
    runtime: DockerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stdin delivery attached at create waits for start_container; a runner removed
    (or a runtime closed) before that must not leave the connection open."""
    host = runtime._hosts["h1"]
    client = _Client()
    host.ok, host.client, host.network_ready = True, client, True

    async def place(_spec: ContainerSpec) -> object:
        return host

    monkeypatch.setattr(runtime, "_place", place)
    monkeypatch.setattr(
        "orchestrator.runtime.docker_engine.remove_sync", lambda *_a: client.calls.append("rm")
    )
    first = await runtime.create(spec())
    assert list(runtime._stdin) == [first.id]
    held = runtime._stdin[first.id]
    await runtime.remove("h1", first.id)
    assert held.closed and runtime._stdin == {}

    await runtime.create(spec())
    held = runtime._stdin["cid"]
    await runtime.aclose()
    assert held.closed and runtime._stdin == {}
    assert all(s.fileno() == -1 for s in client.sockets)


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
