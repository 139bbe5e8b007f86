"""Hostile and careless input to the HTTP API gets a 4xx JSON answer, never a 500.

The daemon runs in-process with the REAL GitLab and GitHub providers (their webhook
parsing is what hostile bodies hit) pointed at a closed port, and a fake runtime. Every
answer is also checked against the OpenAPI document. Each case below gave a 500 before:
RecursionError from 100k-deep JSON, ValueError from a 5,000-digit integer, LookupError
from ``charset=bogus``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from orchestrator.app import Daemon
from orchestrator.config import Settings
from tests.fakes import FakeRuntime, FakeWorld
from tests.http_support import webhook_forges
from tests.openapi_check import check_response

MGMT = "mgmt-secret-token"
HOOK = "hook-secret"
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
LONG_COUNT = b'{"pool": "amd64", "count": ' + b"9" * 5000 + b"}"


class Api:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.base = f"http://127.0.0.1:{daemon.port}"
        self.session = aiohttp.ClientSession()

    async def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, data=body, headers=headers or {}
        ) as r:
            raw = await r.read()
            check_response(method, path, r.status, r.headers, raw)
            return r.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    world = FakeWorld()
    settings = make_settings(
        gitlab_url=None,
        gitlab_token=None,
        gitlab_projects=[],
        forges=webhook_forges(HOOK),
        pools=[{"name": "amd64", "forge": "gitlab", "labels": ["docker"], "max_runners": 2}],
        poll_interval=30,
        management_enabled=True,
        management_token=MGMT,
        max_webhook_bytes=4 * 1024 * 1024,
    )
    daemon = Daemon(settings, runtime=lambda s, i: FakeRuntime(world, instance_id=i))
    await daemon.start()
    client = Api(daemon)
    try:
        yield client
    finally:
        await client.session.close()
        await daemon.stop()


BOGUS = "application/json; charset=bogus"
BEARER = {"Authorization": f"Bearer {MGMT}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        ("8,000-deep array", b"[" * 8000 + b"]" * 8000, BEARER, 400),
        ("100k-deep object", DEEP_OBJECT, BEARER, 413),  # bigger than a management body
        ("5,000-digit count", LONG_COUNT, BEARER, 400),
        ("unknown charset", b'{"pool": "amd64"}', {**BEARER, "Content-Type": BOGUS}, 415),
        ("not UTF-8", b'{"pool": "\xff\xfe"}', BEARER, 400),
        ("NUL bytes", b"\x00" * 100, BEARER, 400),
        ("a JSON string", b'"amd64"', BEARER, 400),
        ("count as float", b'{"pool": "amd64", "count": 1.5}', BEARER, 400),
        ("count as bool", b'{"pool": "amd64", "count": true}', BEARER, 400),
        ("a 10 kB pool name", json.dumps({"pool": "p" * 10_000}).encode(), BEARER, 400),
    ],
)
async def test_malformed_management_bodies_are_4xx_json(
    api: Api, name: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    for path in ("/api/v1/runners/scale-up", "/api/v1/runners/scale-down"):
        got, answer = await api.send("POST", path, body, headers)
        assert got == status, (name, answer)
        assert "error" in answer and len(answer["error"]) < 300


def _github_headers(body: bytes) -> dict[str, str]:
    sig = "sha256=" + hmac.new(HOOK.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": sig, "X-GitHub-Event": "workflow_job"}


GITLAB_HEADERS = {"X-Gitlab-Token": HOOK, "X-Gitlab-Event": "Job Hook"}


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("100k-deep array", DEEP),
        ("100k-deep object", DEEP_OBJECT),
        ("5,000-digit id", b'{"build_id": ' + b"7" * 5000 + b"}"),
        ("not JSON", b"{broken"),
        ("a list", b"[1, 2]"),
    ],
)
async def test_malformed_webhooks_with_a_valid_secret_are_4xx_json(
    api: Api, name: str, body: bytes
) -> None:
    got, answer = await api.send("POST", "/webhooks/gitlab", body, GITLAB_HEADERS)
    assert 400 <= got < 500, (name, got, answer)
    got, answer = await api.send("POST", "/webhooks/github", body, _github_headers(body))
    assert 400 <= got < 500, (name, got, answer)
    got, answer = await api.send(
        "POST",
        "/webhooks/github",
        body,
        {**_github_headers(body), "Content-Type": "application/json; charset=bogus"},
    )
    assert 400 <= got < 500, (name, got, answer)


async def test_a_body_that_never_finishes_is_408_not_a_hung_handler(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.httpinput

    monkeypatch.setattr(orchestrator.httpinput, "BODY_READ_S", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.daemon.port)
    writer.write(
        b"POST /api/v1/runners/scale-up HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + MGMT.encode() + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pool"'
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
