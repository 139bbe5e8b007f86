"""``ssh://`` Docker hosts, against a real sshd on loopback in front of this engine.

The README promises ``docker_hosts: [{url: "ssh://admin@pi.lan"}]``. These tests start an
OpenSSH server on 127.0.0.1 (Debian's openssh-server; root logs in with a key made for
the test) and reach this machine's engine through it, as a daemon reaches a Pi: the
runtime's ssh relay runs the system ``ssh``, which runs ``docker system dial-stdio`` on
the far side. The operator's ssh config is stood in for by a wrapper ``ssh`` on PATH that
adds ``-F`` with the test's config (ssh reads ``~/.ssh`` from the passwd entry, not $HOME).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.config import DockerHostConfig
from orchestrator.runtime.docker_engine import DockerRuntime
from tests.docker.conftest import Events, cleanup, new_instance_id
from tests.docker.helpers import SECRET, listening_server, logs_until, make_spec
from tests.e2e.harness import free_port

pytestmark = pytest.mark.docker

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclasses.dataclass
class SshServer:
    port: int
    home: Path

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def client_bin(self, identity: Path) -> Path:
        """A directory with an ``ssh`` that uses the test's config and ``identity``."""
        name = f"bin-{identity.name}"
        bin_dir = self.home / name
        if not bin_dir.exists():
            bin_dir.mkdir()
            config = self.home / f"ssh_config-{identity.name}"
            config.write_text(
                "Host 127.0.0.1\n"
                f"  IdentityFile {identity}\n"
                "  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.home / 'known_hosts'}\n"
                "  GlobalKnownHostsFile /dev/null\n"
                "  StrictHostKeyChecking yes\n"
            )
            wrapper = bin_dir / "ssh"
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
            wrapper.chmod(0o755)
        return bin_dir

    def ssh_processes(self) -> list[int]:
        """Our ssh client processes towards this server still alive."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"ssh") and str(self.port).encode() in argv:
                found.append(int(entry.name))
        return found


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("NOT RUN: sshd or ssh-keygen missing (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("NOT RUN: the ssh host test logs in as root on a loopback sshd")
    home = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key", "stranger_key"):
        _keygen(home / key)
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    port = free_port()
    host_pub = (home / "host_key.pub").read_text().split()
    (home / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nPidFile {home / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    argv = [SSHD, "-D", "-e", "-f", str(home / "sshd_config")]
    with listening_server(argv, port, home / "sshd.log", "sshd"):
        yield SshServer(port, home)


@pytest.fixture
async def ssh_runtime(
    sshd: SshServer, monkeypatch: pytest.MonkeyPatch, events: Events
) -> AsyncIterator[DockerRuntime]:
    monkeypatch.setenv("PATH", f"{sshd.client_bin(sshd.home / 'client_key')}:{os.environ['PATH']}")
    rt = DockerRuntime(new_instance_id(), [DockerHostConfig(name="pi", url=sshd.url, arch="amd64")])
    await rt.start(events)
    try:
        yield rt
    finally:
        await cleanup(rt)


async def test_a_runner_on_an_ssh_host_gets_its_credential_over_stdin_and_leaves_nothing(
    sshd: SshServer, ssh_runtime: DockerRuntime, events: Events
) -> None:
    """Create, stdin delivery (the hijacked attach connection through ssh), the event
    stream, logs, list, stop and remove: everything a runner needs, over ssh."""
    rt = ssh_runtime
    (host,) = rt.hosts()
    assert host.ok, host.error
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    spec = make_spec(
        rt,
        command=("sh", "-c", 'printf %s "$CI_SERVER_TOKEN" | sha256sum; exec sleep 30'),
    )
    info = await rt.start_container(await rt.create(spec))
    assert info.host == "pi"
    await events.wait_for(info.id, "start", timeout=15)  # the event stream runs over ssh too
    logs = await logs_until(rt, "pi", info.id, digest)
    assert digest in logs, logs  # the credential arrived on stdin, whole
    assert SECRET not in logs
    (listed,) = (await rt.list()).containers
    assert listed.id == info.id and listed.running
    await rt.stop("pi", info.id, timeout_s=2)
    await rt.remove("pi", info.id)
    assert (await rt.list()).containers == ()


async def test_closing_the_runtime_ends_every_ssh_process(
    sshd: SshServer, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{sshd.client_bin(sshd.home / 'client_key')}:{os.environ['PATH']}")
    rt = DockerRuntime(new_instance_id(), [DockerHostConfig(name="pi", url=sshd.url, arch="amd64")])
    await rt.start(events)
    assert rt.hosts()[0].ok
    assert sshd.ssh_processes()  # at least the event stream's connection
    await cleanup(rt)
    deadline = time.monotonic() + 10
    while sshd.ssh_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert sshd.ssh_processes() == []


async def test_a_refused_ssh_login_is_a_down_host_that_says_why(
    sshd: SshServer, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key the host does not accept: the host is down with ssh's own words, nothing
    crashes, and no ssh process is left behind."""
    stranger = sshd.client_bin(sshd.home / "stranger_key")
    monkeypatch.setenv("PATH", f"{stranger}:{os.environ['PATH']}")
    rt = DockerRuntime(new_instance_id(), [DockerHostConfig(name="pi", url=sshd.url, arch="amd64")])
    try:
        await rt.start(events)
        (host,) = rt.hosts()
        assert not host.ok
        assert "Permission denied" in host.error, host.error
        assert "ssh to ssh://root@127.0.0.1" in host.error
        assert "down" in rt.placeable("linux/amd64", None) or host.error in rt.placeable(
            "linux/amd64", None
        )
    finally:
        await rt.aclose()
    assert sshd.ssh_processes() == []
