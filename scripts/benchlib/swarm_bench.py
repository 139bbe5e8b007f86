"""The ``swarm`` section: job queued -> runner task running on the Swarm runtime, beside
raw ``docker service create`` of the same image, in the same run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from scripts.benchlib.common import BENCH_LABEL, client, pct
from tests.e2e.harness import (
    SIM_TOKEN,
    TEST_IMAGE,
    Daemon,
    Sim,
    cleanup_instance,
    gitlab_config,
    http,
    pool,
    wait_for,
)


def swarm_pickup(tmp: Path, n: int = 10) -> dict[str, Any]:
    """Swarm runtime (``python scripts/bench.py --only swarm``): job queued -> the runner's
    task running, the job announced by a GitLab Job Hook (no poll wait), beside raw
    ``docker service create`` of the same image -> its task running, in the same run.
    Both are timed by polling task state every 20 ms."""
    from tests.swarm import support

    problem = support.acquire(client.api)
    if problem:
        raise SystemExit(f"bench --swarm: {problem}")
    try:
        raw = []
        for _ in range(n):
            started = time.monotonic()
            svc = client.api.create_service(
                {
                    "ContainerSpec": {"Image": TEST_IMAGE, "Args": ["sleep", "30"]},
                    "RestartPolicy": {"Condition": "none"},
                    "Networks": [{"Target": "host"}],
                },
                labels=BENCH_LABEL,
                mode={"Replicated": {"Replicas": 1}},
            )
            wait_for(
                lambda i=svc["ID"]: any(
                    t["Status"]["State"] == "running"
                    for t in client.api.tasks(filters={"service": i})
                ),
                30,
                "raw service task running",
                0.02,
            )
            raw.append(time.monotonic() - started)
            client.api.remove_service(svc["ID"])
        instance = "bsw" + os.urandom(3).hex()
        sim = Sim("gitlab", SIM_TOKEN)
        config = gitlab_config(
            sim,
            [pool("p", ["docker"])],
            poll_interval=120,
            docker_hosts=[
                {"name": "cluster", "url": "unix:///var/run/docker.sock", "mode": "swarm"}
            ],
        )
        config["forges"][0]["webhook_secret"] = "hook-secret"
        daemon = Daemon(tmp, instance, config, env={"SHUTDOWN_MODE": "drain"})
        time.sleep(2)

        def tasks_running() -> int:
            label = f"io.runner-orchestrator.instance={instance}"
            ids = [x["ID"] for x in client.api.services(filters={"label": label})]
            if not ids:
                return 0
            return sum(
                t["Status"]["State"] == "running"
                for t in client.api.tasks(filters={"service": ids})
            )

        def queue() -> str:
            job = sim.add_job("1", ["docker"], 1)
            hook = {
                "object_kind": "build",
                "build_id": int(job),
                "build_status": "pending",
                "project_id": 1,
                "project_name": "sim / app",
                "runner": None,
            }
            http(
                "POST",
                f"{daemon.url}/webhooks/gitlab",
                hook,
                headers={"X-Gitlab-Token": "hook-secret", "X-Gitlab-Event": "Job Hook"},
            )
            return job

        ours = []
        try:
            for _ in range(n):
                started = time.monotonic()
                job = queue()
                wait_for(lambda: tasks_running() > 0, 60, "runner task running", 0.02)
                ours.append(time.monotonic() - started)
                wait_for(
                    lambda j=job: any(
                        str(x["id"]) == j and x["status"] == "success" for x in sim.jobs()
                    ),
                    60,
                    "job done",
                )
                wait_for(lambda: tasks_running() == 0, 60, "runner gone", 0.1)
        finally:
            daemon.stop()
            sim.stop()
            support.leftovers(client, instance)  # drained: normally nothing
            cleanup_instance(instance)
    finally:
        support.release()
    return {
        "swarm_pickup_webhook_s": {
            "p50": pct(ours, 0.5),
            "p95": pct(ours, 0.95),
            "samples": [round(x, 3) for x in ours],
        },
        "raw_service_create_to_running_s": {
            "p50": pct(raw, 0.5),
            "p95": pct(raw, 0.95),
            "samples": [round(x, 3) for x in raw],
        },
        "ratio_p50": round(pct(ours, 0.5) / pct(raw, 0.5), 2),
        "docker_server": client.info().get("ServerVersion"),
    }
