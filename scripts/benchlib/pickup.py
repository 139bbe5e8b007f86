"""The ``pickup`` and ``pickup_defaults`` sections: job queued -> runner container running,
one job after another, beside the raw cost of creating and starting one container."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.benchlib.common import baseline_one, pct, running
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
    wait_for,
)


def _pickup(
    sim: Sim,
    daemon: Daemon,
    instance: str,
    queue: Callable[[], str],
    done: str,
    n: int,
    pause: float,
    *,
    jitter: Callable[[], float] | None = None,
) -> list[float]:
    """Queue n jobs one after another; time each from queued to its container running."""
    out = []
    try:
        for _ in range(n):
            before = running(instance)
            started = time.monotonic()
            job = queue()
            wait_for(lambda b=before: running(instance) > b, 30, "container", 0.02)
            out.append(time.monotonic() - started)
            wait_for(
                lambda j=job: any(str(x["id"]) == j and x["status"] == done for x in sim.jobs()),
                30,
                "job done",
            )
            wait_for(lambda: running(instance) == 0, 30, "container gone", 0.1)
            time.sleep(pause + (jitter() if jitter else 0.0))
    finally:
        daemon.stop()
        sim.stop()
        cleanup_instance(instance)
    return out


def latency_poll(tmp: Path, n: int = 10) -> list[float]:
    sim = Sim("gitlab", SIM_TOKEN)
    config = gitlab_config(sim, [pool("p", ["docker"])], poll_interval=2)
    daemon = Daemon(tmp, "benchpoll", config)
    # 0.7 s pauses land each job at a different phase of the 2 s poll interval.
    return _pickup(
        sim, daemon, "benchpoll", lambda: sim.add_job("1", ["docker"], 0.5), "success", n, 0.7
    )


def latency_webhook(tmp: Path, n: int = 10) -> list[float]:
    sim = Sim("github", GH_TOKEN)
    config = github_config(sim, [pool("p", ["docker"])], poll_interval=120)
    config["forges"][0]["webhook_secret"] = "hook-secret"
    daemon = Daemon(tmp, "benchhook", config)
    target = {"url": f"{daemon.url}/webhooks/github", "secret": "hook-secret"}
    http("POST", f"{sim.url}/_sim/webhook-target", target)
    time.sleep(2)  # past the startup reconcile; the next poll is two minutes away
    return _pickup(
        sim,
        daemon,
        "benchhook",
        lambda: sim.add_job("acme/app", ["self-hosted", "docker"], 0.5),
        "completed",
        n,
        0.0,
    )


def pickup_defaults(tmp: Path, kind: str, n: int = 6, watched: int = 10) -> dict[str, Any]:
    """Single jobs one after another, default settings (15 s poll), no webhooks, ``watched``
    projects/repos: today's pickup for a forge that cannot reach the daemon."""
    token = SIM_TOKEN if kind == "gitlab" else GH_TOKEN
    sim = Sim(kind, token)
    instance = f"benchdef{kind[0]}{kind[-3]}"  # gl / gh
    if kind == "gitlab":
        config = gitlab_config(sim, [pool("p", ["docker"])])
        config["forges"][0]["projects"] = [str(i) for i in range(1, watched + 1)]
        del config["forges"][0]["requests_per_minute"]  # the default budget
        for i in range(2, watched + 1):
            http("POST", f"{sim.url}/_sim/projects", {"id": i, "path": f"p{i}"})
        where, tags, done = "1", ["docker"], "success"
    else:
        config = github_config(sim, [pool("p", ["docker"])])
        # runners register on the first repo (repo-scoped runners serve only that repo)
        config["forges"][0]["repos"] = ["acme/app"] + [f"acme/r{i}" for i in range(watched - 1)]
        for repo in config["forges"][0]["repos"]:
            http("POST", f"{sim.url}/_sim/repos/{repo}", {})
        where, tags, done = "acme/app", ["self-hosted", "docker"], "completed"
    del config["poll_interval"]  # the default
    daemon = Daemon(tmp, instance, config)
    forges = wait_for(lambda: daemon.status()["forges"], 30, "the first reconcile")
    interval = float(forges[0]["poll_interval_s"])
    time.sleep(3)
    rng = random.Random(7)
    # each job lands at a different phase of the poll interval
    samples = _pickup(
        sim,
        daemon,
        instance,
        lambda: sim.add_job(where, tags, 0.5),
        done,
        n,
        0.0,
        jitter=lambda: rng.uniform(0, interval),
    )
    return {
        "kind": kind,
        "watched": watched,
        "poll_interval_s": interval,
        "samples": [round(x, 3) for x in samples],
        "p50": pct(samples, 0.5),
        "p95": pct(samples, 0.95),
    }


def section_pickup(tmp: Path) -> dict[str, Any]:
    base = baseline_one()
    b50 = pct(base, 0.5)
    out: dict[str, Any] = {"baseline_create_start_s": {"p50": b50, "p95": pct(base, 0.95)}}
    poll = latency_poll(tmp)
    out["pickup_poll_s"] = {
        "p50": pct(poll, 0.5),
        "p95": pct(poll, 0.95),
        "poll_interval_s": 2,
        "samples": [round(x, 3) for x in poll],
        "ratio_to_baseline_p50": round(pct(poll, 0.5) / b50, 1),
    }
    hook = latency_webhook(tmp)
    out["pickup_webhook_s"] = {
        "p50": pct(hook, 0.5),
        "p95": pct(hook, 0.95),
        "samples": [round(x, 3) for x in hook],
        "ratio_to_baseline_p50": round(pct(hook, 0.5) / b50, 1),
    }
    return out


def section_pickup_defaults(tmp: Path) -> dict[str, Any]:
    base = baseline_one(5)
    rows = [pickup_defaults(tmp, kind) for kind in ("gitlab", "github")]
    b50 = pct(base, 0.5)
    for row in rows:
        row["ratio_to_baseline_p50"] = round(row["p50"] / b50, 1)
    return {"pickup_defaults": {"baseline_create_start_s": b50, "rows": rows}}
