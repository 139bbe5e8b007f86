"""The ssh relay of ``ssh://`` Docker hosts, with a stand-in ``ssh`` on PATH.

The stand-in is a shell script: ``cat`` plays ``docker system dial-stdio`` (bytes in,
the same bytes out, end of stream passed on), so the relay's copying and half-closes can
be checked byte for byte. tests/docker/test_ssh_host.py runs the real thing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.runtime.ssh_relay import SshRelay, ssh_command


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://pi.lan", ["--", "pi.lan"]),
        ("ssh://admin@pi.lan", ["-l", "admin", "--", "pi.lan"]),
        ("ssh://admin@pi.lan:2222", ["-l", "admin", "-p", "2222", "--", "pi.lan"]),
        ("ssh://ci%40corp@10.0.0.5", ["-l", "ci@corp", "--", "10.0.0.5"]),
        ("ssh://[fe80::1]:22", ["-p", "22", "--", "fe80::1"]),
    ],
)
def test_the_ssh_command_for_a_url(url: str, expected: list[str]) -> None:
    argv = ssh_command(url, connect_timeout_s=10)
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    assert argv[5:] == [*expected, "docker system dial-stdio"]


@pytest.mark.parametrize("url", ["tcp://pi.lan:2375", "ssh://", "ssh:///path"])
def test_a_url_that_names_no_ssh_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not an ssh://"):
        ssh_command(url, connect_timeout_s=10)


def _stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ssh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.fixture
def relay() -> Iterator[list[SshRelay]]:
    made: list[SshRelay] = []
    yield made
    for r in made:
        r.close()


def _connect(r: SshRelay) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(r.path)
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_bytes_go_both_ways_and_end_of_stream_is_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: list[SshRelay]
) -> None:
    """Stdin delivery depends on it: the client's half-close must reach the far side,
    whose answer must still come back after it."""
    _stand_in(tmp_path, monkeypatch, "exec cat")
    r = SshRelay("ssh://admin@pi.lan", 10)
    relay.append(r)
    sock = _connect(r)
    payload = b"x" * 200_000 + b"\nend"
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)  # cat sees end of file only through the relay
    assert _read_to_end(sock) == payload
    sock.close()
    r.wait_idle(5)
    assert r.last_error == ""


def test_what_ssh_says_when_it_fails_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: list[SshRelay]
) -> None:
    _stand_in(
        tmp_path, monkeypatch, 'echo "admin@pi.lan: Permission denied (publickey)." >&2; exit 255'
    )
    r = SshRelay("ssh://admin@pi.lan", 10)
    relay.append(r)
    sock = _connect(r)
    assert _read_to_end(sock) == b""  # the connection just ends
    sock.close()
    r.wait_idle(5)
    assert r.last_error == "admin@pi.lan: Permission denied (publickey)."


def test_close_ends_running_ssh_processes_and_removes_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in(tmp_path, monkeypatch, f"echo $$ > {tmp_path}/pid; exec sleep 60")
    r = SshRelay("ssh://pi.lan", 10)
    sock = _connect(r)
    deadline = time.monotonic() + 5
    while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int((tmp_path / "pid").read_text())
    started = time.monotonic()
    r.close()
    assert time.monotonic() - started < 5
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )
    assert not Path(r.path).exists()
    assert _read_to_end(sock) == b""
    sock.close()
    r.close()  # idempotent


def test_no_ssh_binary_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: list[SshRelay]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called ssh here
    r = SshRelay("ssh://pi.lan", 10)
    relay.append(r)
    sock = _connect(r)
    assert _read_to_end(sock) == b""
    sock.close()
    deadline = time.monotonic() + 5
    while not r.last_error and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.last_error.startswith("cannot run ssh:")
