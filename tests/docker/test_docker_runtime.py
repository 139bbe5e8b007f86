"""DockerRuntime against the real local engine: lifecycle, labels, isolation, hardening,
GPU and platform requests, credential delivery, events and logs."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time

import docker.errors
import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_FORGE_RUNNER_ID,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    ContainerRuntime,
    ContainerStartError,
    NoCapacity,
)
from orchestrator.runtime.docker_create import StdinDelivery
from orchestrator.runtime.docker_engine import DockerRuntime, NotOurs

from .conftest import Events, cleanup, new_instance_id
from .helpers import SECRET, make_spec, wait_exited

pytestmark = pytest.mark.docker


async def test_satisfies_protocol(runtime: DockerRuntime) -> None:
    assert isinstance(runtime, ContainerRuntime)


async def test_round_trip(runtime: DockerRuntime, docker_client) -> None:
    spec = make_spec(runtime)
    info = await runtime.create(spec)
    assert info.status == "created"
    assert info.runner_id == spec.runner_id
    assert info.host == "local"
    assert runtime.hosts()[0].containers == 1

    started = await runtime.start_container(info)
    assert started.status == "running"
    assert started.started_at is None  # start reads nothing back; the listing has the times
    assert docker_client.containers.get(info.id).status == "running"

    listing = await runtime.list()
    assert [c.id for c in listing.containers] == [info.id]
    assert listing.unreachable == frozenset()
    assert listing.containers[0].running
    assert listing.containers[0].started_at is not None
    # what create said without asking the engine again is what the engine says
    listed = listing.containers[0]
    assert (info.name, info.runner_id, info.pool, info.forge, info.forge_runner_id) == (
        listed.name,
        listed.runner_id,
        listed.pool,
        listed.forge,
        listed.forge_runner_id,
    )

    t0 = time.monotonic()
    await runtime.stop("local", info.id, timeout_s=5)
    assert time.monotonic() - t0 < 5, "SIGTERM should reach the child through init + entrypoint"
    stopped = (await runtime.list()).containers[0]
    assert stopped.status == "exited"
    assert stopped.exit_code == 143  # sleep killed by the forwarded SIGTERM
    assert stopped.finished_at is not None
    assert stopped.finished_at >= stopped.started_at

    await runtime.remove("local", info.id)
    assert (await runtime.list()).containers == ()
    assert runtime.hosts()[0].containers == 0
    # gone already: stop and remove are no-ops, logs are empty
    await runtime.stop("local", info.id)
    await runtime.remove("local", info.id)
    assert await runtime.logs("local", info.id) == ""


async def test_labels_on_container_and_network(runtime: DockerRuntime, docker_client) -> None:
    spec = make_spec(runtime, pool="gpu-pool", forge_runner_id="99")
    info = await runtime.create(spec)
    labels = docker_client.containers.get(info.id).labels
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_INSTANCE] == runtime.instance_id
    assert labels[LABEL_POOL] == "gpu-pool"
    assert labels[LABEL_FORGE_RUNNER_ID] == "99"
    assert labels[LABEL_RUNNER_ID] == spec.runner_id

    network = docker_client.networks.get(f"runner-orchestrator-{runtime.instance_id}")
    assert network.attrs["Labels"][LABEL_MANAGED] == "true"
    assert network.attrs["Labels"][LABEL_INSTANCE] == runtime.instance_id
    assert network.attrs["Driver"] == "bridge"
    assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    attrs = docker_client.api.inspect_container(info.id)
    assert attrs["HostConfig"]["NetworkMode"] == network.name

    # drain: the network stays while a container uses it, goes when none does
    await runtime.remove("local", info.id)
    assert await runtime.remove_network() == ["local"]
    assert not docker_client.networks.list(names=[network.name])


async def test_named_volume_is_labelled(runtime: DockerRuntime, docker_client) -> None:
    volume = f"{runtime.instance_id}-cache"
    info = await runtime.create(make_spec(runtime, volumes=(f"{volume}:/cache",)))
    labels = docker_client.volumes.get(volume).attrs["Labels"]
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_INSTANCE] == runtime.instance_id
    await runtime.remove("local", info.id)
    assert await runtime.remove_volumes() == 1


async def test_instance_isolation(runtime: DockerRuntime, local_host, docker_client) -> None:
    other = DockerRuntime(new_instance_id(), [local_host])
    await other.start(Events())
    try:
        theirs = await other.create(make_spec(other))
        mine = await runtime.create(make_spec(runtime))

        assert [c.id for c in (await runtime.list()).containers] == [mine.id]
        assert [c.id for c in (await other.list()).containers] == [theirs.id]
        with pytest.raises(NotOurs):
            await runtime.remove("local", theirs.id)
        with pytest.raises(NotOurs):
            await runtime.stop("local", theirs.id)
        assert await runtime.remove_all() == 1
        await runtime.remove_network()
        assert docker_client.containers.get(theirs.id).status == "created"
        assert docker_client.networks.list(names=[other.network_name])
    finally:
        await cleanup(other)


async def test_hardening_by_default(runtime: DockerRuntime, docker_client) -> None:
    spec = make_spec(runtime, cap_add=("CHOWN",), cpus=0.5, memory="96m", pids_limit=64)
    info = await runtime.create(spec)
    host_config = docker_client.api.inspect_container(info.id)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["CapAdd"] == ["CHOWN"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["PidsLimit"] == 64
    assert host_config["Memory"] == 96 * 1024 * 1024
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Privileged"] is False
    assert host_config["Init"] is True
    assert host_config["AutoRemove"] is False
    assert host_config["RestartPolicy"]["Name"] in {"no", ""}
    assert host_config["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    assert not any("docker.sock" in b for b in host_config.get("Binds") or [])


async def test_privileged_and_socket_only_when_asked(runtime: DockerRuntime, docker_client) -> None:
    info = await runtime.create(make_spec(runtime, privileged=True, docker_socket=True))
    host_config = docker_client.api.inspect_container(info.id)["HostConfig"]
    assert host_config["Privileged"] is True
    assert "/var/run/docker.sock:/var/run/docker.sock" in host_config["Binds"]


async def test_gpu_request_created_but_start_fails(local_host, docker_client) -> None:
    """No GPU on this machine: the host is *configured* with GPUs so placement lets the
    spec through; the container must be created with the right device request and the
    start must fail with a clear ContainerStartError (not hang, not crash)."""
    gpu_host = local_host.model_copy(update={"gpus": 2})
    rt = DockerRuntime(new_instance_id(), [gpu_host])
    await rt.start(Events())
    try:
        all_gpus = await rt.create(make_spec(rt, gpus="all"))
        two = await rt.create(make_spec(rt, gpus=2, gpu_capabilities=("gpu", "compute")))
        requests_all = docker_client.api.inspect_container(all_gpus.id)["HostConfig"][
            "DeviceRequests"
        ]
        assert len(requests_all) == 1
        assert requests_all[0]["Driver"] == "nvidia"
        assert requests_all[0]["Count"] == -1
        assert requests_all[0]["Capabilities"] == [["gpu", "utility", "compute"]]
        assert not requests_all[0]["DeviceIDs"]
        requests_two = docker_client.api.inspect_container(two.id)["HostConfig"]["DeviceRequests"]
        assert requests_two[0]["Count"] == 2
        assert requests_two[0]["Capabilities"] == [["gpu", "compute"]]

        t0 = time.monotonic()
        with pytest.raises(ContainerStartError) as failure:
            await rt.start_container(all_gpus)
        assert time.monotonic() - t0 < 30
        assert failure.value.container_id == all_gpus.id
        assert failure.value.host == "local"
        assert "nvidia" in str(failure.value) or "gpu" in str(failure.value).lower()
        # placement refuses more GPUs than configured
        with pytest.raises(NoCapacity, match="GPUs"):
            await rt.create(make_spec(rt, gpus=3))
    finally:
        await cleanup(rt)


async def test_no_gpu_host_means_no_capacity(runtime: DockerRuntime) -> None:
    with pytest.raises(NoCapacity, match="GPUs"):
        await runtime.create(make_spec(runtime, gpus=1))
    assert "GPUs" in runtime.placeable("linux/amd64", "all")
    assert runtime.placeable("linux/amd64", None) == ""


async def test_platform_passed_on_create(local_host, docker_client) -> None:
    """The image is linux/amd64. The same socket is also configured as an "arm64" host,
    so placement sends linux/arm64 there and the engine itself must refuse the mismatch,
    which proves ``platform=`` reaches it."""
    arm = DockerHostConfig(name="arm", url=local_host.url, arch="arm64")
    rt = DockerRuntime(new_instance_id(), [local_host, arm])
    await rt.start(Events())
    try:
        info = await rt.create(make_spec(rt, platform="linux/amd64"))
        assert info.host == "local"
        attrs = docker_client.api.inspect_container(info.id)
        assert attrs["Platform"] == "linux"
        image = docker_client.api.inspect_image(attrs["Image"])
        assert (image["Os"], image["Architecture"]) == ("linux", "amd64")

        with pytest.raises(ContainerStartError, match="platform") as failure:
            await rt.create(make_spec(rt, platform="linux/arm64"))
        assert failure.value.host == "arm"
    finally:
        await cleanup(rt)


def _read_archive(docker_client, container_id: str, path: str) -> dict[str, tuple[int, bytes]]:
    stream, _ = docker_client.api.get_archive(container_id, path)
    data = b"".join(stream)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            content = tar.extractfile(member).read() if member.isfile() else b""
            out[member.name] = (member.mode, content)
    return out


async def test_credential_file_not_in_inspect(runtime: DockerRuntime, docker_client) -> None:
    command = (
        "sh",
        "-c",
        'echo "token=$CI_SERVER_TOKEN"; echo "file=${RUNNER_CREDENTIAL_FILE:-unset}"; '
        "ls /run/runner-orchestrator/",
    )
    info = await runtime.create(make_spec(runtime, command=command, credential_delivery="file"))
    attrs = docker_client.api.inspect_container(info.id)
    inspect_text = repr(attrs)
    assert SECRET not in inspect_text
    env = attrs["Config"]["Env"]
    assert "RUNNER_CREDENTIAL_FILE=/run/runner-orchestrator/credential" in env
    assert "RUNNER_CREDENTIAL_ENV=CI_SERVER_TOKEN" in env
    assert not any(e.startswith("CI_SERVER_TOKEN=") for e in env)
    assert SECRET not in " ".join(attrs["Args"] + (attrs["Config"]["Cmd"] or []))

    files = _read_archive(docker_client, info.id, "/run/runner-orchestrator")
    assert files["runner-orchestrator"][0] & 0o777 == 0o777
    mode, content = files["runner-orchestrator/credential"]
    assert (mode & 0o777, content) == (0o444, SECRET.encode())

    await runtime.start_container(info)
    await wait_exited(runtime, info.id)
    logs = await runtime.logs("local", info.id)
    # the entrypoint exported it under CI_SERVER_TOKEN, then deleted the file
    assert f"token={SECRET}" in logs
    assert "file=unset" in logs
    assert "credential" not in logs.split("file=unset", 1)[1]


async def test_credential_stdin_not_in_inspect(runtime: DockerRuntime, docker_client) -> None:
    """The default delivery: stdin open with StdinOnce, attached at create, written right
    after start; the entrypoint exports it; nothing of it in inspect, env, argv or the
    container's filesystem, and the attach connection is closed once written."""
    command = (
        "sh",
        "-c",
        'echo "token=$CI_SERVER_TOKEN"; echo "switch=${RUNNER_CREDENTIAL_STDIN:-unset}"; '
        'echo "rest=$(cat)"; ls /run/runner-orchestrator 2>&1 || true',
    )
    info = await runtime.create(make_spec(runtime, command=command))
    assert runtime._stdin[info.id].closed is False  # attached, waiting for the start
    attrs = docker_client.api.inspect_container(info.id)
    assert SECRET not in repr(attrs)
    config = attrs["Config"]
    assert (config["OpenStdin"], config["StdinOnce"], config["Tty"]) == (True, True, False)
    assert "RUNNER_CREDENTIAL_STDIN=1" in config["Env"]
    assert "RUNNER_CREDENTIAL_ENV=CI_SERVER_TOKEN" in config["Env"]
    assert not any(
        e.startswith(("CI_SERVER_TOKEN=", "RUNNER_CREDENTIAL_FILE=")) for e in config["Env"]
    )
    assert SECRET not in " ".join(attrs["Args"] + (config["Cmd"] or []))

    delivery = runtime._stdin[info.id]
    await runtime.start_container(info)
    assert delivery.closed and info.id not in runtime._stdin
    exited = await wait_exited(runtime, info.id)
    assert exited.exit_code == 0
    logs = await runtime.logs("local", info.id)
    assert f"token={SECRET}" in logs
    assert "switch=unset" in logs  # the entrypoint unsets it for the runner
    assert "rest=\n" in logs  # stdin ended after the one line
    assert "No such file" in logs  # nothing written into the filesystem
    assert SECRET not in repr(docker_client.api.inspect_container(info.id))


async def test_a_failed_stdin_attach_leaves_no_container(
    runtime: DockerRuntime, docker_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same rule as file delivery: a container whose credential cannot be delivered is
    removed at once, never left half made."""

    def refuse(*_args: object) -> None:
        raise docker.errors.APIError("500", explanation="attach refused (test)")

    monkeypatch.setattr(StdinDelivery, "attach", classmethod(lambda cls, *a: refuse()))
    spec = make_spec(runtime)
    with pytest.raises(ContainerStartError, match="attach refused"):
        await runtime.create(spec)
    assert docker_client.containers.list(all=True, filters={"name": spec.name}) == []
    assert runtime._stdin == {}


async def test_stdin_closed_unwritten_makes_the_runner_exit_non_zero(
    runtime: DockerRuntime, docker_client
) -> None:
    """The daemon dies between start and write: its end of the attach closes with the
    process, the engine closes the container's stdin, the entrypoint reads nothing and
    exits 65 without starting the runner; the reconciler (or recovery) then removes it."""
    info = await runtime.create(make_spec(runtime, command=("sh", "-c", "echo ran")))
    delivery = runtime._take_stdin(info.id)
    assert delivery is not None
    docker_client.api.start(info.id)  # started, never written
    delivery.close()
    exited = await wait_exited(runtime, info.id)
    assert exited.exit_code == 65
    logs = await runtime.logs("local", info.id)
    assert "no credential on stdin" in logs
    assert "ran" not in logs
    await runtime.remove("local", info.id)
    assert docker_client.containers.list(all=True, filters={"id": info.id}) == []


async def test_stdin_that_never_closes_does_not_block_the_entrypoint_forever(
    runtime: DockerRuntime,
) -> None:
    """An attach held open and silent (a daemon hung between start and write, or a
    container started by hand): the entrypoint gives up after RUNNER_CREDENTIAL_TIMEOUT."""
    spec = make_spec(
        runtime, command=("sh", "-c", "echo ran"), env={"RUNNER_CREDENTIAL_TIMEOUT": "1"}
    )
    info = await runtime.create(spec)
    delivery = runtime._take_stdin(info.id)
    assert delivery is not None
    try:
        host = runtime._hosts["local"]
        await asyncio.to_thread(host.client.api.start, info.id)
        exited = await wait_exited(runtime, info.id)
    finally:
        delivery.close()
    assert exited.exit_code == 65
    assert "ran" not in await runtime.logs("local", info.id)


async def test_removing_a_created_stdin_container_closes_its_attach(runtime: DockerRuntime) -> None:
    info = await runtime.create(make_spec(runtime))
    delivery = runtime._stdin[info.id]
    await runtime.remove("local", info.id)
    assert delivery.closed and runtime._stdin == {}


async def test_credential_env_mode(runtime: DockerRuntime, docker_client) -> None:
    spec = make_spec(runtime, credential_delivery="env", command=("sh", "-c", "true"))
    info = await runtime.create(spec)
    attrs = docker_client.api.inspect_container(info.id)
    env = attrs["Config"]["Env"]
    assert f"CI_SERVER_TOKEN={SECRET}" in env  # env delivery: visible in inspect, by design
    assert "RUNNER_CREDENTIAL_ENV=CI_SERVER_TOKEN" in env
    assert not any(e.startswith("RUNNER_CREDENTIAL_FILE=") for e in env)
    assert SECRET not in " ".join(attrs["Args"] + (attrs["Config"]["Cmd"] or []))
    with pytest.raises(Exception, match="Could not find"):
        _read_archive(docker_client, info.id, "/run/runner-orchestrator")


async def test_die_event_with_exit_code(runtime: DockerRuntime, events: Events) -> None:
    info = await runtime.create(make_spec(runtime, command=("sh", "-c", "exit 3")))
    await runtime.start_container(info)
    t0 = time.monotonic()
    died = await events.wait_for(info.id, "die", timeout=5)
    assert time.monotonic() - t0 < 2.5
    assert died.exit_code == 3
    assert died.runner_id == info.runner_id
    assert died.host == "local"
    assert any(e.action == "start" and e.container_id == info.id for e in events.items)
    await runtime.remove("local", info.id)
    await events.wait_for(info.id, "destroy", timeout=5)


async def test_events_survive_a_broken_stream(runtime: DockerRuntime, events: Events) -> None:
    """Closing the stream under the watcher (as a dropped connection would) makes it
    reconnect; an event after that still arrives."""
    host = runtime._hosts["local"]
    host.watching.clear()
    host.stream.close()
    await asyncio.to_thread(host.watching.wait, 5)
    info = await runtime.create(make_spec(runtime, command=("true",)))
    await runtime.start_container(info)
    await events.wait_for(info.id, "die", timeout=5)


async def test_logs_tail(runtime: DockerRuntime) -> None:
    info = await runtime.create(make_spec(runtime, command=("seq", "1", "50")))
    await runtime.start_container(info)
    await wait_exited(runtime, info.id)
    assert await runtime.logs("local", info.id, tail=5) == "46\n47\n48\n49\n50\n"
    exited = [c for c in (await runtime.list()).containers if c.id == info.id][0]
    assert exited.exit_code == 0


async def test_missing_image_is_a_start_error(runtime: DockerRuntime) -> None:
    with pytest.raises(ContainerStartError, match="image not found"):
        await runtime.create(make_spec(runtime, image="runner-orchestrator/nope:missing"))


async def test_name_conflict_is_a_start_error(runtime: DockerRuntime) -> None:
    spec = make_spec(runtime)
    await runtime.create(spec)
    with pytest.raises(ContainerStartError, match="409"):
        await runtime.create(spec)
