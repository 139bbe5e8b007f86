"""The ``forge_cost`` section: forge requests per reconcile and per idle hour of a daemon
watching many projects/repos with no job, with its idle CPU and RSS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from scripts.benchlib.common import cpu_seconds, rss_mib
from tests.e2e.harness import (
    GH_TOKEN,
    SIM_TOKEN,
    Daemon,
    Sim,
    cleanup_instance,
    github_config,
    gitlab_config,
    http,
    pool,
)


def forge_cost(tmp: Path, kind: str, scopes: int, seconds: float = 40) -> dict[str, Any]:
    """Idle daemon watching ``scopes`` projects/repos: requests per reconcile and per hour."""
    token = SIM_TOKEN if kind == "gitlab" else GH_TOKEN
    sim = Sim(kind, token)
    instance = f"bench{kind[:2]}{scopes}"
    if kind == "gitlab":
        config = gitlab_config(sim, [pool("p", ["docker"])], poll_interval=15)
        config["forges"][0]["projects"] = [str(i) for i in range(1, scopes + 1)]
        config["forges"][0]["requests_per_minute"] = 300
        for i in range(2, scopes + 1):  # every project exists, with no job at all
            http("POST", f"{sim.url}/_sim/projects", {"id": i, "path": f"p{i}"})
    else:
        config = github_config(sim, [pool("p", ["docker"])], poll_interval=15)
        config["forges"][0]["repos"] = [f"acme/r{i}" for i in range(scopes)]
        for i in range(scopes):
            http("POST", f"{sim.url}/_sim/repos/acme/r{i}", {})
    daemon = Daemon(tmp, instance, config)
    try:
        # the first full pass (GitHub: fills the ETag cache); 100 scopes take a few
        # budget-bound rounds for it since issue 15
        time.sleep(5 if scopes <= 10 else 70)
        state0, status0 = sim.state(), daemon.status()
        cpu0, t0 = cpu_seconds(daemon), time.monotonic()
        time.sleep(seconds)
        state1, status1 = sim.state(), daemon.status()
        cpu1, t1 = cpu_seconds(daemon), time.monotonic()
        requests = state1["requests"] - state0["requests"]
        reconciles = status1["reconcile"]["count"] - status0["reconcile"]["count"]
        result: dict[str, Any] = {
            "kind": kind,
            "scopes": scopes,
            "window_s": round(t1 - t0, 1),
            "reconciles": reconciles,
            "requests": requests,
            "requests_per_reconcile": round(requests / max(1, reconciles), 1),
            "requests_per_idle_hour": round(requests * 3600 / (t1 - t0)),
            "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "rss_mib": rss_mib(daemon),
        }
        if kind == "github":
            used = state1.get("rate_limit_used", 0) - state0.get("rate_limit_used", 0)
            result["rate_limit_used_per_idle_hour"] = round(used * 3600 / (t1 - t0))
        return result
    finally:
        daemon.stop()
        sim.stop()
        cleanup_instance(instance)
