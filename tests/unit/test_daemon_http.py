"""The daemon started in-process with fakes serves every endpoint it promises."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from orchestrator.app import Daemon
from orchestrator.config import Settings
from orchestrator.models import RunnerState
from tests.conftest import scan_for_secrets
from tests.fakes import FakeForge, FakeRuntime, FakeWorld
from tests.openapi_check import check_response

MGMT = "mgmt-secret-token"


class Running:
    def __init__(self, daemon: Daemon, world: FakeWorld) -> None:
        self.daemon = daemon
        self.world = world
        self.base = f"http://127.0.0.1:{daemon.port}"
        self.session = aiohttp.ClientSession()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.get(self.base + path, **kw) as r:
            raw = await r.read()
            check_response("GET", path, r.status, r.headers, raw)
            body = raw.decode()
            try:
                return r.status, json.loads(body)
            except json.JSONDecodeError:
                return r.status, body

    async def send(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, **kw) as r:
            raw = await r.read()
            check_response(method, path, r.status, r.headers, raw)
            text = raw.decode()
            return r.status, (json.loads(text) if text.startswith(("{", "[")) else text)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "condition not reached"
            await asyncio.sleep(0.05)


@pytest.fixture
async def running(make_settings: Callable[..., Settings]) -> AsyncIterator[Running]:
    world = FakeWorld()
    settings = make_settings(
        pools=[
            {"name": "amd64", "labels": ["docker", "amd64"], "max_runners": 4, "cooldown_s": 300}
        ],
        poll_interval=30,
        management_enabled=True,
        management_token=MGMT,
        max_webhook_bytes=2048,
    )

    def providers(s: Settings, instance: str, observer: Any) -> dict[str, Any]:
        forge = FakeForge(world, name="gitlab", kind="gitlab", instance_id=instance)
        return {"gitlab": forge}

    daemon = Daemon(
        settings, providers=providers, runtime=lambda s, i: FakeRuntime(world, instance_id=i)
    )
    await daemon.start()
    run = Running(daemon, world)
    try:
        await run.until(lambda: daemon.reconciler.snapshot.result != "never")
        yield run
    finally:
        await run.session.close()
        await daemon.stop()


def auth(token: str = MGMT) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_read_endpoints_and_aliases(running: Running) -> None:
    for prefix in ("", "/api/v1"):
        status, body = await running.get(f"{prefix}/health")
        assert status == 200 and body["status"] == "ok"
        status, body = await running.get(f"{prefix}/ready")
        assert status == 200 and body["ready"] is True
        status, body = await running.get(f"{prefix}/status")
        assert status == 200
        assert body["forges"][0]["name"] == "gitlab"
        assert body["pools"][0]["name"] == "amd64"
        assert body["reconcile"]["result"] == "ok"
        status, body = await running.get(f"{prefix}/runners")
        assert status == 200 and body == {"runners": [], "total": 0}
        status, text = await running.get(f"{prefix}/metrics")
        assert status == 200 and "runner_orchestrator_runners" in text


async def test_job_to_runner_visible_in_status_runners_and_metrics(running: Running) -> None:
    running.world.add_job("gitlab", ["docker", "amd64"])
    running.world.add_job("gitlab", ["windows"])
    running.daemon.scheduler.nudge()
    await running.until(lambda: len(running.world.live_containers()) == 1)
    await running.until(lambda: running.daemon.reconciler.snapshot.runners != ())
    _, body = await running.get("/runners")
    (runner,) = body["runners"]
    assert set(runner) >= {
        "id",
        "pool",
        "forge",
        "state",
        "since",
        "container_id",
        "forge_runner_id",
        "current_job",
    }
    assert runner["pool"] == "amd64" and runner["state"] == "idle"
    _, status = await running.get("/status")
    reasons = {w["reason"] for w in status["waiting_jobs"]}
    assert reasons == {"runner_starting", "no_matching_pool"}
    _, metrics = await running.get("/metrics")
    assert 'runner_orchestrator_runners{pool="amd64",state="idle"} 1.0' in metrics
    assert 'runner_orchestrator_waiting_jobs{reason="no_matching_pool"} 1.0' in metrics
    assert runner["id"] not in metrics  # no runner ids as label values
    whole = json.dumps(body) + json.dumps(status) + metrics
    assert scan_for_secrets(whole) == []


async def test_management_needs_the_bearer_token(running: Running) -> None:
    for method, path in [
        ("POST", "/api/v1/runners/scale-up"),
        ("POST", "/api/v1/runners/scale-down"),
        ("DELETE", "/api/v1/runners/x"),
        ("GET", "/api/v1/runners/x/logs"),
    ]:
        status, _ = await running.send(method, path, json={"pool": "amd64", "count": 1})
        assert status == 401, path
        status, _ = await running.send(
            method, path, headers=auth("wrong"), json={"pool": "amd64", "count": 1}
        )
        assert status == 401, path


async def test_management_actions(running: Running) -> None:
    status, body = await running.send(
        "POST", "/api/v1/runners/scale-up", headers=auth(), json={"pool": "amd64", "count": 2}
    )
    assert status == 202 and body["delta"] == 2
    await running.until(lambda: len(running.world.live_containers()) == 2)
    await running.until(lambda: len(running.daemon.reconciler.snapshot.runners) == 2)
    _, listing = await running.get("/runners")
    rid = listing["runners"][0]["id"]
    status, text = await running.send("GET", f"/api/v1/runners/{rid}/logs", headers=auth())
    assert status == 200 and "log of" in text
    status, body = await running.send("DELETE", f"/api/v1/runners/{rid}", headers=auth())
    assert status == 200 and body["removed"] is True
    status, body = await running.send(
        "POST", "/api/v1/runners/scale-down", headers=auth(), json={"pool": "amd64", "count": 5}
    )
    assert status == 202
    await running.until(lambda: running.world.live_containers() == [])


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"pool": "nope", "count": 1}).encode(), 400),
        (json.dumps({"pool": "amd64", "count": "two"}).encode(), 400),
        (json.dumps({"pool": "amd64", "count": 0}).encode(), 400),
        (json.dumps({"count": 1}).encode(), 400),
    ],
)
async def test_bad_management_input_is_400_with_json(
    running: Running, payload: bytes, status: int
) -> None:
    got, body = await running.send("POST", "/api/v1/runners/scale-up", headers=auth(), data=payload)
    assert got == status and "error" in body


async def test_unknown_runner_is_404(running: Running) -> None:
    for method, path in [("DELETE", "/api/v1/runners/nope"), ("GET", "/api/v1/runners/nope/logs")]:
        status, body = await running.send(method, path, headers=auth())
        assert status == 404 and "error" in body


async def test_webhooks(running: Running) -> None:
    payload = json.dumps({"job": {"id": "77", "tags": ["docker", "amd64"]}}).encode()
    sig = "sha256=" + hmac.new(b"hook-secret", payload, hashlib.sha256).hexdigest()
    status, body = await running.send(
        "POST", "/webhooks/gitlab", data=payload, headers={"X-Hub-Signature-256": sig}
    )
    assert status == 202 and body["accepted"] is True
    status, _ = await running.send(
        "POST", "/webhooks/gitlab", data=payload, headers={"X-Hub-Signature-256": "sha256=00"}
    )
    assert status == 401
    status, _ = await running.send("POST", "/webhooks/gitlab", data=b"x" * 5000)
    assert status == 413
    bad = b"{broken"
    sig = "sha256=" + hmac.new(b"hook-secret", bad, hashlib.sha256).hexdigest()
    status, _ = await running.send(
        "POST", "/webhooks/gitlab", data=bad, headers={"X-Hub-Signature-256": sig}
    )
    assert status == 400
    status, _ = await running.send("POST", "/webhooks/github", data=payload)
    assert status == 404  # no GitHub forge configured
    status, _ = await running.send("GET", "/no/such/path")
    assert status == 404


async def test_forge_outage_shows_on_ready_and_status_but_health_stays_ok(
    running: Running,
) -> None:
    from providers.errors import TransientProviderError

    forge = running.daemon.providers["gitlab"]
    assert isinstance(forge, FakeForge)
    forge.fail = TransientProviderError("HTTP 503 from forge")
    running.daemon.scheduler.nudge()
    await running.until(lambda: running.daemon.reconciler.snapshot.result == "degraded")
    status, body = await running.get("/ready")
    assert status == 503 and "503" in " ".join(body["reasons"])
    status, body = await running.get("/health")
    assert status == 200
    _, body = await running.get("/status")
    assert body["forges"][0]["paused"] is True


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing"
)
async def test_promtool_accepts_metrics(running: Running) -> None:
    running.world.add_job("gitlab", ["docker", "amd64"])
    running.daemon.scheduler.nudge()
    await running.until(lambda: len(running.world.live_containers()) == 1)
    _, text = await running.get("/metrics")
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_shutdown_leaves_runners_for_adoption_by_default(running: Running) -> None:
    running.world.add_job("gitlab", ["docker", "amd64"])
    running.daemon.scheduler.nudge()
    await running.until(lambda: len(running.world.live_containers()) == 1)
    await running.daemon.scheduler.stop(5)
    assert running.world.live_containers()
    states = {r.state for r in running.daemon.journal.active()}
    assert states == {RunnerState.IDLE}


async def test_a_slow_webhook_lookup_is_still_answered_fast(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.web.webhooks

    forge = running.daemon.providers["gitlab"]

    async def slow(headers: Any, body: bytes) -> Any:
        await asyncio.sleep(30)

    monkeypatch.setattr(orchestrator.web.webhooks, "WEBHOOK_ANSWER_S", 0.3)
    monkeypatch.setattr(forge, "handle_webhook", slow)
    started = asyncio.get_running_loop().time()
    status, body = await running.send("POST", "/webhooks/gitlab", data=b"{}")
    assert status == 202 and "polling" in body["note"]
    assert asyncio.get_running_loop().time() - started < 2


async def test_event_history_says_what_happened_to_a_runner(running: Running) -> None:
    running.world.add_job("gitlab", ["docker", "amd64"])
    running.daemon.scheduler.nudge()
    await running.until(lambda: len(running.world.live_containers()) == 1)
    _, listing = await running.get("/runners")
    rid = listing["runners"][0]["id"]
    status, body = await running.get(f"/api/v1/events?runner={rid}")
    assert status == 200
    words = [e["event"] for e in body["events"]]
    assert words[-3:] == ["registered", "registering", "created"]
    assert all(e["runner"] == rid and e["pool"] == "amd64" for e in body["events"])
    _, body = await running.get("/api/v1/events?pool=amd64&limit=1")
    assert len(body["events"]) == 1
    _, body = await running.get("/api/v1/events?pool=nope")
    assert body["events"] == []
    _, metrics = await running.get("/metrics")
    assert 'runner_orchestrator_runner_transitions_total{from_state="",pool="amd64"' in metrics


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=" + "9" * 5000,
        "limit=-1",
        "limit=1.5",
        "before=0",
        "runner=",
        "pool=" + "p" * 300,
        "limit=%D9%A1",
    ],
)
async def test_bad_event_queries_are_400(running: Running, query: str) -> None:
    status, body = await running.get(f"/api/v1/events?{query}")
    assert status == 400 and "error" in body


async def test_status_page_and_runner_page(running: Running) -> None:
    running.world.add_job("gitlab", ["docker", "amd64"])
    running.world.add_job("gitlab", ["windows"])
    running.daemon.scheduler.nudge()
    await running.until(lambda: len(running.world.live_containers()) == 1)
    await running.until(lambda: running.daemon.reconciler.snapshot.runners != ())
    async with running.session.get(running.base + "/") as r:
        markup = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assert "script-src 'sha256-" in r.headers["Content-Security-Policy"]
    assert "no pool has all of its tags" in markup  # the windows job, in words
    status, live = await running.get("/?part=live")
    assert status == 200 and "<html" not in live and "Waiting jobs (2)" in live
    status, body = await running.get("/?part=everything")
    assert status == 400 and "error" in body
    rid = running.daemon.reconciler.snapshot.runners[0].id
    status, mine = await running.get(f"/runners/{rid}")
    assert status == 200 and "History" in mine and 'id="logs-form"' in mine
    assert "log of" not in mine  # no token, no log tail
    status, mine = await running.get(f"/runners/{rid}", headers=auth())
    assert status == 200 and "log of" in mine
    status, _ = await running.get(f"/runners/{rid}", headers=auth("wrong"))
    assert status == 401
    status, missing = await running.get("/runners/nope")
    assert status == 404 and "No runner" in missing


async def test_a_100k_job_queue_gives_a_bounded_status(running: Running) -> None:
    """A forge page of 100k jobs made /status 25 MB: lists are capped, totals count all."""
    import dataclasses
    from datetime import UTC, datetime

    from orchestrator.models import Job, WaitingJob, WaitReason

    now = datetime.now(UTC)
    waiting = tuple(
        WaitingJob(
            Job("gitlab", str(i), "g/p", frozenset({"x"}), now), None, WaitReason.NO_MATCHING_POOL
        )
        for i in range(100_000)
    )
    reconciler = running.daemon.reconciler
    reconciler.snapshot = dataclasses.replace(reconciler.snapshot, waiting=waiting)
    async with running.session.get(running.base + "/status") as r:
        raw = await r.read()
    body = json.loads(raw)
    assert body["waiting_jobs_total"] == 100_000 and len(body["waiting_jobs"]) == 500
    assert len(raw) < 200_000
    _, body = await running.get("/status?limit=5")
    assert len(body["waiting_jobs"]) == 5
    status, _ = await running.get("/status?limit=5001")
    assert status == 400
    async with running.session.get(running.base + "/") as r:
        assert len(await r.read()) < 200_000  # the page shows 100 rows and a count
    _, body = await running.get("/runners?limit=1")
    assert body["total"] == 0
