"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a running daemon.

The daemon runs in-process on the fakes (port 0); Prometheus runs as a child process on
a free loopback port with our scrape config (rewritten to point at the daemon, 1 s
interval) and our alert rules. PromQL through its HTTP API must return the runner gauge
and the pickup-latency histogram; every dashboard and rule expression must evaluate.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.deploy.conftest import LiveDaemon
from tests.deploy.support import (
    ALERTS,
    PROMETHEUS_CONFIG,
    dashboard,
    dashboard_exprs,
    free_port,
    grafana_to_promql,
    need_tool,
    rule_exprs,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


class Prometheus:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def api(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
            assert body["status"] == "success", body
            return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def until(self, what: str, promql: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll a query until it returns series (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                result = await self.query(promql)
                if result:
                    return result
            if loop.time() > deadline:
                pytest.fail(f"Prometheus: no result for {what} ({promql}) within {timeout:.0f}s")
            await asyncio.sleep(0.5)


@pytest.fixture
async def prometheus(live_daemon: LiveDaemon, tmp_path: Path) -> AsyncIterator[Prometheus]:
    binary = need_tool("prometheus", "apt-get install -y prometheus")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "runner-orchestrator"]
    job["static_configs"] = [{"targets": [live_daemon.url.removeprefix("http://")]}]
    config["scrape_configs"] = [job]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    try:
        prom = Prometheus(f"http://127.0.0.1:{port}", session)
        await prom.until("the daemon target up", 'up{job="runner-orchestrator"} == 1')
        yield prom
    except BaseException:
        print((tmp_path / "prometheus.log").read_text()[-3000:])
        raise
    finally:
        await session.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


async def test_prometheus_scrapes_runner_gauge_and_pickup_latency(prometheus: Prometheus) -> None:
    runners = await prometheus.until(
        "the runner gauge", 'runner_orchestrator_runners{job="runner-orchestrator"}'
    )
    by_state = {r["metric"]["state"]: float(r["value"][1]) for r in runners}
    assert by_state["idle"] == 1.0, by_state  # the job's runner, started by the reconcile
    assert {r["metric"]["pool"] for r in runners} == {"amd64"}

    buckets = await prometheus.until(
        "the pickup-latency histogram", "runner_orchestrator_job_pickup_latency_seconds_bucket"
    )
    assert {b["metric"]["pool"] for b in buckets} == {"amd64"}
    infinite = [b for b in buckets if b["metric"]["le"] == "+Inf"]
    assert [float(b["value"][1]) for b in infinite] == [1.0]
    # The job waited ~7 s before the first reconcile: p50 lands in the (5, 8] bucket.
    quantile = await prometheus.query(
        "histogram_quantile(0.5, sum by (le) "
        "(runner_orchestrator_job_pickup_latency_seconds_bucket))"
    )
    assert 5.0 < float(quantile[0]["value"][1]) <= 8.0, quantile


async def test_dashboard_and_rule_expressions_evaluate_and_rules_load(
    prometheus: Prometheus,
) -> None:
    # A PromQL syntax error, a bad function or a wrong matcher is a 400 from the API.
    exprs = {
        f"dashboard: {k}": grafana_to_promql(v) for k, v in dashboard_exprs(dashboard()).items()
    }
    exprs.update({f"rule: {k}": v for k, v in rule_exprs().items()})
    failures = {}
    for where, expr in exprs.items():
        query = expr
        if expr.startswith("label_values("):
            name = expr.removeprefix("label_values(").split(",")[0]
            query = f"count by (pool) ({name})"
        async with prometheus.session.get(
            f"{prometheus.url}/api/v1/query", params={"query": query}
        ) as response:
            body = await response.json()
        if body.get("status") != "success":
            failures[where] = body.get("error")
    assert failures == {}

    # The alert rules are loaded and evaluate cleanly against the live series.
    data = await prometheus.api("rules")
    groups = {g["name"]: g for g in data["groups"]}
    assert set(groups) == {
        "runner-orchestrator.daemon",
        "runner-orchestrator.forges",
        "runner-orchestrator.jobs",
        "runner-orchestrator.runners",
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # rules report "ok" once evaluated (1 s interval)
        data = await prometheus.api("rules")
        health = {r["name"]: r["health"] for g in data["groups"] for r in g["rules"]}
        if all(h == "ok" for h in health.values()) or loop.time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert all(h == "ok" for h in health.values()), health
    alerts = await prometheus.api("alerts")
    firing = {a["labels"]["alertname"] for a in alerts["alerts"] if a["state"] == "firing"}
    assert "RunnerOrchestratorDown" not in firing
