"""The ``burst`` section: n queued jobs -> n runner containers running, the daemon (under
``scripts/bench_probe.py``, which times each phase) beside raw SDK create+start bursts,
rounds interleaved, medians reported."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.benchlib import ROOT
from scripts.benchlib.common import BENCH_LABEL, client, running
from tests.e2e.harness import (
    SIM_TOKEN,
    TEST_IMAGE,
    Daemon,
    Process,
    Sim,
    cleanup_instance,
    gitlab_config,
    pool,
    wait_for,
)


def hardened_kwargs(instance: str, image: str = TEST_IMAGE) -> Callable[[int], dict[str, Any]]:
    """``containers.create`` kwargs exactly as the daemon builds them for the burst's pool
    (``pool()`` in the e2e harness: host network, 256m, 256 pids; hardening: init, no caps,
    no-new-privileges, log limits...), with the raw baseline's command and no credential
    delivery (env mode, a dummy value): only the engine's cost of the options differs."""
    from orchestrator.runtime import ContainerSpec
    from orchestrator.runtime.docker_create import create_kwargs

    def kwargs(i: int) -> dict[str, Any]:
        spec = ContainerSpec(
            runner_id=f"bench{i}",
            name=f"{instance}-{i}",
            instance_id=instance,
            pool="p",
            forge="gitlab",
            forge_runner_id=str(i),
            image=image,
            command=("sleep", "60"),
            credential="not-a-secret",
            credential_env="CI_SERVER_TOKEN",
            credential_delivery="env",
            network="host",
            memory="256m",
            pids_limit=256,
        )
        out = create_kwargs(spec, "local", instance_id=instance, network_name="unused")
        out["labels"] = {**out["labels"], **BENCH_LABEL}
        out["entrypoint"] = []
        return out

    return kwargs


def baseline_burst(
    n: int = 50,
    concurrency: int = 8,
    options: Callable[[int], dict[str, Any]] | None = None,
    image: str = TEST_IMAGE,
) -> dict[str, Any]:
    """Raw SDK: create + start n containers, ``concurrency`` at a time; per-call times too.
    ``options``: the create kwargs of container i (default: the plain raw container)."""
    calls: dict[str, list[float]] = {"docker create": [], "docker start": []}

    def plain(_: int) -> dict[str, Any]:
        return {
            "image": image,
            "command": ["sleep", "60"],
            "labels": BENCH_LABEL,
            "network_mode": "host",
            "entrypoint": [],
        }

    def one(i: int) -> str:
        kwargs = (options or plain)(i)
        t0 = time.monotonic()
        c = client.containers.create(**kwargs)
        t1 = time.monotonic()
        c.start()
        calls["docker create"].append(t1 - t0)  # includes the SDK's inspect after create
        calls["docker start"].append(time.monotonic() - t1)
        return str(c.id)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool_:
        ids = list(pool_.map(one, range(n)))
    elapsed = time.monotonic() - started
    for cid in ids:
        client.containers.get(cid).remove(force=True)
    return {"total_s": elapsed, "calls": calls}


class ProbedDaemon(Daemon):
    """The daemon run under ``scripts/bench_probe.py``: same code, plus phase timers."""

    def __init__(self, tmp: Path, instance: str, config: dict[str, Any]) -> None:
        self.probe_out = tmp / f"probe-{instance}.json"
        super().__init__(tmp, instance, config, env={"BENCH_PROBE_OUT": str(self.probe_out)})

    def start(self) -> None:
        argv = [sys.executable, str(ROOT / "scripts" / "bench_probe.py")]
        self.process = Process(f"daemon-{self.instance}", argv, self.env)
        wait_for(self._healthy, 30, "daemon /health")

    def probe(self) -> dict[str, Any]:
        return dict(json.loads(self.probe_out.read_text()))


def burst_daemon(
    tmp: Path, instance: str, n: int = 50, delivery: str = "file", image: str = TEST_IMAGE
) -> dict[str, Any]:
    """One burst: n jobs queued at once -> n containers running, with the phase timers."""
    sim = Sim("gitlab", SIM_TOKEN)
    config = gitlab_config(
        sim,
        [pool("p", ["docker"], max_runners=n, image=image)],
        poll_interval=2,
        max_runners=n,
        credential_delivery=delivery,
    )
    daemon = ProbedDaemon(tmp, instance, config)
    try:
        time.sleep(1)
        queued = time.time()
        for _ in range(n):
            sim.add_job("1", ["docker"], 60)
        wait_for(lambda: running(instance) >= n, 300, f"{n} running containers", 0.05)
        done = time.time()
        # the probe writes its records when the reconcile that spawned them ends (if
        # the hook points moved, fewer phases are timed: the totals stay right)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: _probe_spawns(daemon) >= n, 30, "probe records", 0.1)
        probe = daemon.probe() if daemon.probe_out.exists() else {"spans": [], "polls": []}
    finally:
        daemon.stop()
        sim.stop()
        cleanup_instance(instance)
    seen = min(
        (end for start, end, count in probe["polls"] if count > 0 and end >= queued),
        default=queued,
    )
    return {
        "total_s": done - queued,
        "poll_wait_s": seen - queued,
        "from_seen_s": done - seen,
        "phases": _phases(probe, queued, done),
    }


def _probe_spawns(daemon: ProbedDaemon) -> int:
    try:
        spans = daemon.probe()["spans"]
    except (OSError, ValueError):
        return 0
    return sum(1 for s in spans if s[1] == "spawn total")


def _phases(probe: dict[str, Any], queued: float, done: float) -> dict[str, Any]:
    """Per-runner phase times (ms) and the reconciles that ran, from the probe's spans."""
    per_runner: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    calls: dict[str, int] = defaultdict(int)
    first_write: dict[int, float] = {}
    spawn_start: dict[int, float] = {}
    reconciles = []
    for runner_seq, phase, start, end in probe["spans"]:
        if phase == "reconcile" and end >= queued and start <= done:
            reconciles.append([round(start - queued, 3), round(end - queued, 3)])
        if runner_seq < 0:
            continue
        per_runner[runner_seq][phase] += end - start
        calls[phase] += 1
        if phase == "journal write":
            first_write[runner_seq] = min(first_write.get(runner_seq, end), start)
        if phase == "spawn total":
            spawn_start[runner_seq] = start
    for seq, began in spawn_start.items():
        per_runner[seq]["spawn semaphore wait"] = first_write.get(seq, began) - began
    phases = sorted({ph for r in per_runner.values() for ph in r})
    runners = max(1, len(per_runner))
    return {
        "reconciles": reconciles,
        "runners": len(per_runner),
        "mean_ms": {
            ph: round(1000 * sum(r.get(ph, 0.0) for r in per_runner.values()) / runners, 1)
            for ph in phases
        },
        "calls_per_runner": {ph: round(calls[ph] / runners, 1) for ph in calls},
    }


IDLE_RUNNER_IMAGE = "runner-orchestrator/bench-idle-runner:latest"


def idle_runner_image(tmp: Path, base: str) -> str:
    """The test image with a runner that takes no job: the real entrypoint reads the
    credential (stdin delivery included), then ``gitlab-runner`` is ``sleep``, the raw
    baseline's process. A burst of these measures what the daemon adds to create+start;
    a burst of job-taking shims adds the 50 runners' own start-up work (HTTP calls and
    shell forks per runner) on the same two cores. Built from the local image: no pull."""
    context = tmp / "idle-runner"
    context.mkdir(exist_ok=True)
    (context / "gitlab-runner").write_text("#!/bin/sh\nexec sleep 300\n")
    (context / "gitlab-runner").chmod(0o755)
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY gitlab-runner /usr/local/bin/gitlab-runner\n"
    )
    image, _ = client.images.build(path=str(context), tag=IDLE_RUNNER_IMAGE, rm=True)
    return str(image.id)


#: Pause after each burst (daemon or raw) before the next one starts: the engine is
#: still tearing the last one's 50 containers down, and on two cores that would be
#: charged to whichever run comes next.
SETTLE_S = 5.0


def burst(tmp: Path, rounds: int = 5, n: int = 50) -> dict[str, Any]:
    """Daemon bursts and raw SDK bursts, interleaved (daemon with stdin, file and env
    credential delivery, raw, raw with the daemon's create options; again...): medians,
    the ratio in each round to that round's raw run, and the phases of every daemon
    round. Five rounds: on this machine one raw run varies by ±20 %."""
    runs: dict[str, list[dict[str, Any]]] = {"stdin": [], "stdin_idle": [], "file": [], "env": []}
    raw: list[dict[str, Any]] = []
    hardened: list[dict[str, Any]] = []
    # by id: on a shared engine another checkout may re-tag the test image mid-run
    image = str(client.images.get(TEST_IMAGE).id)
    idle_image = idle_runner_image(tmp, image)
    for i in range(rounds):
        for variant, out in runs.items():
            delivery, _, idle = variant.partition("_")
            name = f"bburst{delivery}{idle}{i}"  # INSTANCE_ID: at most 16 characters
            used = idle_image if idle else image
            out.append(burst_daemon(tmp, name, n, delivery=delivery, image=used))
            time.sleep(SETTLE_S)
        raw.append(baseline_burst(n, image=image))
        time.sleep(SETTLE_S)
        hardened.append(
            baseline_burst(n, options=hardened_kwargs(f"benchhard{i}", image), image=image)
        )
        time.sleep(SETTLE_S)
    med = statistics.median
    raw_s = med(r["total_s"] for r in raw)

    def call_means(baseline: list[dict[str, Any]]) -> dict[str, float]:
        return {
            name: round(1000 * med(statistics.mean(r["calls"][name]) for r in baseline), 1)
            for name in baseline[0]["calls"]
        }

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        total = med(r["total_s"] for r in runs)
        from_seen = med(r["from_seen_s"] for r in runs)
        phases = sorted({ph for r in runs for ph in r["phases"]["mean_ms"]})
        return {
            "daemon_s": round(total, 2),
            "daemon_from_seen_s": round(from_seen, 2),
            "poll_wait_s": round(med(r["poll_wait_s"] for r in runs), 2),
            "ratio": round(total / raw_s, 2),
            "ratio_from_seen": round(from_seen / raw_s, 2),
            "samples_s": [round(r["total_s"], 2) for r in runs],
            "samples_from_seen_s": [round(r["from_seen_s"], 2) for r in runs],
            # each round against the raw run of the same round (interleaved: same load)
            "round_ratios_from_seen": [
                round(r["from_seen_s"] / b["total_s"], 2) for r, b in zip(runs, raw, strict=True)
            ],
            "reconciles": [r["phases"]["reconciles"] for r in runs],
            "phase_mean_ms": {
                ph: round(med(r["phases"]["mean_ms"].get(ph, 0.0) for r in runs), 1)
                for ph in phases
            },
            "calls_per_runner": runs[-1]["phases"]["calls_per_runner"],
        }

    hardened_s = med(r["total_s"] for r in hardened)
    return {
        "jobs": n,
        "rounds": rounds,
        "concurrency": 8,
        "baseline_sdk_s": round(raw_s, 2),
        "baseline_samples_s": [round(r["total_s"], 2) for r in raw],
        "baseline_call_mean_ms": call_means(raw),
        # the daemon's create options on raw SDK calls: the engine's cost of hardening
        "baseline_hardened_sdk_s": round(hardened_s, 2),
        "baseline_hardened_ratio": round(hardened_s / raw_s, 2),
        "baseline_hardened_samples_s": [round(r["total_s"], 2) for r in hardened],
        "baseline_hardened_call_mean_ms": call_means(hardened),
        "stdin_delivery": summary(runs["stdin"]),
        "stdin_idle_runners": summary(runs["stdin_idle"]),
        "file_delivery": summary(runs["file"]),
        "env_delivery": summary(runs["env"]),
    }
