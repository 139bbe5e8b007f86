"""The API stays answerable under idle sockets, slowloris clients and log floods.

Faults drawn from a hostile test: 1,100 idle sockets with ``nofile`` 1024 left /health
unanswered for 40 s and wrote 333 MB of accept() tracebacks in 50 s; slowloris
connections stayed open past 90 s; failed management logins were neither logged nor
counted; an empty HTTP_HOST bound every interface; any Host header was answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from orchestrator import httpserver
from orchestrator.app import Daemon
from orchestrator.config import Settings
from tests.fakes import FakeForge, FakeRuntime, FakeWorld

ROOT = Path(__file__).resolve().parents[2]
MGMT = "mgmt-secret-token"


def _daemon(settings: Settings) -> Daemon:
    world = FakeWorld()

    def providers(s: Settings, instance: str, observer: Any) -> dict[str, Any]:
        return {"gitlab": FakeForge(world, name="gitlab", kind="gitlab", instance_id=instance)}

    return Daemon(
        settings, providers=providers, runtime=lambda s, i: FakeRuntime(world, instance_id=i)
    )


@pytest.fixture
async def small(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Daemon]:
    """A daemon with room for 20 connections and a 1 s idle/header timeout."""
    monkeypatch.setattr(httpserver, "MAX_CONNECTIONS", 20)
    monkeypatch.setattr(httpserver, "IDLE_TIMEOUT_S", 1.0)
    daemon = _daemon(
        make_settings(poll_interval=30, management_enabled=True, management_token=MGMT)
    )
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def _health(port: int, host: str | None = None) -> tuple[int, str]:
    headers = {"Host": host} if host else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/health", headers=headers) as r,
    ):
        return r.status, await r.text()


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(65536), within) == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_health_answers_with_three_times_the_cap_of_idle_sockets(small: Daemon) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", small.port) for _ in range(60)]
    try:
        status, _ = await _health(small.port)
        assert status == 200
        text = small.metrics.exposition().decode()
        assert 'runner_orchestrator_http_rejected_total{reason="connection_cap"}' in text
        # The oldest idle sockets were closed to make room.
        assert await _closed_by_server(idle[0][0], within=10)
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_slowloris_head_is_cut_off(small: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    async def dribble() -> None:
        for i in range(200):  # bounded: 20 s at most
            writer.write(f"X-Slow-{i}: y\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.1)

    dribbling = asyncio.create_task(dribble())
    try:
        # The server drops the connection long before the dribble would end...
        assert await _closed_by_server(reader, within=15)
        # ...and answers others meanwhile.
        assert (await _health(small.port))[0] == 200
    finally:
        dribbling.cancel()
        writer.close()


async def test_idle_connections_are_closed_after_the_timeout(small: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small.port)
    try:
        assert await _closed_by_server(reader, within=15)
    finally:
        writer.close()


def test_repeated_errors_are_logged_once_per_window() -> None:
    now = [0.0]
    flt = httpserver.RateLimitFilter(httpserver.RateLimiter(60, clock=lambda: now[0]))

    def record() -> logging.LogRecord:
        return logging.LogRecord(
            "asyncio",
            logging.ERROR,
            __file__,
            1,
            "socket.accept() out of system resource",
            None,
            None,
        )

    passed = [flt.filter(record()) for _ in range(10_000)]
    assert passed.count(True) == 1
    now[0] += 61
    last = record()
    assert flt.filter(last)
    assert "9999 more like this" in last.getMessage()


def test_the_noisy_loggers_are_limited_once_served() -> None:
    httpserver.install_log_limits()
    httpserver.install_log_limits()
    for name in httpserver.NOISY_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, httpserver.RateLimitFilter) for f in filters) == 1


async def test_failed_logins_are_counted_and_logged_rate_limited(small: Daemon) -> None:
    url = f"http://127.0.0.1:{small.port}/api/v1/runners/scale-up"
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for i in range(30):
                headers = {"Authorization": f"Bearer wrong-{i}"}
                async with session.post(url, json={"pool": "x"}, headers=headers) as r:
                    assert r.status == 401
    failed = [e for e in logs if e["event"] == "management.auth_failed"]
    assert 1 <= len(failed) <= 2  # one per minute (two if the minute turned)
    assert "wrong-" not in repr(failed)  # never the offered token
    text = small.metrics.exposition().decode()
    assert "runner_orchestrator_management_auth_failures_total 30.0" in text


async def test_a_foreign_host_header_is_refused(small: Daemon) -> None:
    """DNS rebinding: a page at evil.example whose name now points to 127.0.0.1."""
    status, body = await _health(small.port, host="evil.example")
    assert status == 421 and "HTTP_ALLOWED_HOSTS" in body
    for host in ("localhost", f"localhost:{small.port}", "127.0.0.1", f"[::1]:{small.port}"):
        assert (await _health(small.port, host=host))[0] == 200, host
    # A reverse proxy passing the public name of the hook URL still reaches the webhook.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{small.port}/webhooks/gitlab",
            data=b"{}",
            headers={"Host": "ci-hooks.example.com"},
        ) as r,
    ):
        assert r.status == 401  # the signature is checked, the Host is not


async def test_allowed_hosts_setting(make_settings: Callable[..., Settings]) -> None:
    daemon = _daemon(make_settings(poll_interval=30, http_allowed_hosts="ci.lan, Runner.LAN"))
    await daemon.start()
    try:
        assert (await _health(daemon.port, host="runner.lan:8080"))[0] == 200
        assert (await _health(daemon.port, host="ci.lan"))[0] == 200
        assert (await _health(daemon.port, host="other.lan"))[0] == 421
    finally:
        await daemon.stop()


def test_wildcard_bind_without_a_list_answers_any_host(
    make_settings: Callable[..., Settings],
) -> None:
    from orchestrator.httpinput import allowed_hosts

    assert allowed_hosts(make_settings(http_host="0.0.0.0")) is None
    assert allowed_hosts(make_settings(http_host="0.0.0.0", http_allowed_hosts="a.lan")) == {
        "a.lan",
        "localhost",
        "127.0.0.1",
        "::1",
        "0.0.0.0",
    }
    assert allowed_hosts(make_settings(http_allowed_hosts="*")) is None


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_http_host_is_refused(make_settings: Callable[..., Settings], value: str) -> None:
    with pytest.raises(ValidationError, match="http_host"):
        make_settings(http_host=value)


def test_the_cap_stays_below_the_file_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert httpserver.connection_cap(10**9) <= max(8, soft // 4)


_CHILD = textwrap.dedent(
    """
    import asyncio, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from orchestrator.config import Settings
    from orchestrator.logging import configure
    from tests.unit.test_connections import _daemon

    configure("info", "json")  # to stderr, as `run` does

    async def main():
        settings = Settings(
            gitlab_url="http://gitlab.test", gitlab_token="glpat-testtoken0123456789",
            gitlab_projects=["g/p"], state_path=sys.argv[1], instance_id="nofile",
            http_port=0, poll_interval=30,
        )
        daemon = _daemon(settings)
        await daemon.start()
        print(daemon.port, flush=True)
        await asyncio.sleep(120)
        await daemon.stop()

    asyncio.run(main())
    """
)


@pytest.mark.timeout(120)
def test_more_sockets_than_nofile_leave_health_answering_and_the_log_small(
    tmp_path: Path,
) -> None:
    """The original fault: a daemon with nofile 128 gets 300 idle sockets."""
    log_path = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log_path.open("w") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path / "state.db")],
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=ROOT,
            env=env,
            text=True,
        )
    sockets: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        for _ in range(300):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as resp:
            assert resp.status == 200
        assert log_path.stat().st_size < 200_000, "the log was flooded"
    finally:
        for s in sockets:
            s.close()
        child.kill()
        child.wait(10)


class _Conn:
    def __init__(self) -> None:
        self.transport: object | None = object()
        self.closed = False

    def force_close(self) -> None:
        self.closed, self.transport = True, None


class _Server:
    def __init__(self, n: int) -> None:
        self.connections = [_Conn() for _ in range(n)]
        self.made = 0

    def __call__(self) -> Any:
        self.made += 1
        self.connections.append(_Conn())  # aiohttp lists it once connected
        return "a new aiohttp handler"


class _Transport(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.data = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.data += bytes(data)

    def close(self) -> None:
        self.closed = True


def test_at_the_cap_the_oldest_idle_connection_makes_room_never_a_busy_one() -> None:
    server = _Server(4)
    busy = {server.connections[0]: 1, server.connections[1]: 1}
    rejected: list[str] = []
    factory = httpserver._CappedFactory(server, busy, 4, rejected.append)  # type: ignore[arg-type]
    assert factory() == "a new aiohttp handler"
    assert [c.closed for c in server.connections] == [False, False, True, False, False]
    # The closed one stays listed until aiohttp's task ends; it no longer counts.
    assert factory() == "a new aiohttp handler"
    assert [c.closed for c in server.connections] == [False, False, True, True, False, False]
    assert rejected == ["connection_cap", "connection_cap"]


def test_when_every_connection_serves_a_request_a_new_one_gets_a_503_line() -> None:
    server = _Server(3)
    busy = dict.fromkeys(server.connections, 1)
    factory = httpserver._CappedFactory(server, busy, 3, lambda reason: None)  # type: ignore[arg-type]
    protocol = factory()
    transport = _Transport()
    protocol.connection_made(transport)
    assert transport.data.startswith(b"HTTP/1.1 503 ") and transport.closed
    body = transport.data.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body) == {"error": "too many connections, try again"}
    assert int(transport.data.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert server.made == 0 and not any(c.closed for c in server.connections)


async def test_a_bug_hit_again_and_again_logs_one_traceback(
    small: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.snapshot import Snapshot

    def broken(self: Snapshot, max_waiting: int | None = None) -> Any:
        raise RuntimeError("a bug in the snapshot")

    monkeypatch.setattr(Snapshot, "status_json", broken)
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                async with session.get(f"http://127.0.0.1:{small.port}/status") as r:
                    assert r.status == 500
                    assert (await r.json()) == {"error": "internal error (see the daemon log)"}
    assert len([e for e in logs if e["event"] == "http.handler_failed"]) == 1
