#!/usr/bin/env python3
"""Benchmark: figures for docs/benchmarks.md, each beside a baseline measured in the same run.

Not a test: it measures and writes. Run from the repo root on a machine with a Docker
Engine and the test runner image (``make test-image``)::

    python scripts/bench.py                    # every section; writes docs/benchmarks.{json,md}
    python scripts/bench.py --only planner,burst   # some sections, merged into the saved JSON
    python scripts/bench.py --render           # rewrite the page from the saved JSON
    python scripts/bench.py --no-build ...     # use the test image as it is (shared engine)

Sections (each bounded in count and time; containers, networks and daemons they start are
removed at the end; only loopback and the local engine are touched):

* ``pickup``: job queued -> runner container running, p50/p95, in poll mode
  (POLL_INTERVAL=2 s) and in webhook mode (GitHub workflow_job, POLL_INTERVAL=120 s),
  against the raw cost of creating and starting one container of the same image;
* ``pickup_defaults``: the same with default settings and no webhooks (15 s poll),
  10 watched projects/repos: today's behaviour for a homelab behind NAT;
* ``burst``: 50 queued jobs -> 50 runner containers running, against creating and
  starting 50 such containers directly with the SDK, 8 at a time (the goal baseline),
  and the same with the daemon's create options (the hardening), which separates the
  engine's cost of hardening from the daemon's own; each credential delivery (stdin, the
  default; file; env); rounds interleaved (daemon, raw, daemon, raw, ...) and medians
  reported, because the machine may be shared. The daemon runs under
  ``scripts/bench_probe.py``, which times each phase;
* ``planner``: :func:`orchestrator.planner.compute_plan` for 1k/10k/100k jobs x 1,000
  runners x 20 pools, against the per-job matching it replaced
  (``tests/reference_planner.py``), same inputs, same run;
* ``forge_cost``: forge requests per reconcile and per idle hour for 10 and 100 watched
  projects/repos, with the daemon's RSS and CPU while idle;
* ``footprint``: the daemon's RSS and CPU watching 100 GitLab projects and 100 GitHub
  repos at once, against the same daemon watching one of each.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from orchestrator.models import ForgeKind, Job, PoolSpec, Runner, RunnerState  # noqa: E402
from orchestrator.planner import compute_plan  # noqa: E402
from scripts import gitlab_budget  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    GH_TOKEN,
    SIM_TOKEN,
    TEST_IMAGE,
    Daemon,
    Process,
    Sim,
    cleanup_instance,
    github_config,
    gitlab_config,
    http,
    pool,
    wait_for,
)
from tests.reference_planner import reference_plan  # noqa: E402

BENCH_LABEL = {"io.runner-orchestrator.bench": "true"}
client = docker.from_env()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)


def running(instance: str) -> int:
    """Running containers of ``instance``: one list call. (The SDK's high-level
    ``containers.list`` also inspects every container it lists; polled every 20-50 ms
    during a burst, that loaded the engine with up to a thousand inspects a second that
    only the daemon's rows paid for.)"""
    return len(
        client.api.containers(
            filters={"label": f"io.runner-orchestrator.instance={instance}", "status": "running"}
        )
    )


def baseline_one(n: int = 10) -> list[float]:
    """Raw SDK: create + start one container of the test image, n times."""
    times = []
    for _ in range(n):
        started = time.monotonic()
        c = client.containers.create(
            TEST_IMAGE,
            command=["sleep", "30"],
            labels=BENCH_LABEL,
            network_mode="host",
            entrypoint=[],
        )
        c.start()
        times.append(time.monotonic() - started)
        c.remove(force=True)
    return times


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


def burst(tmp: Path, rounds: int = 3, n: int = 50) -> dict[str, Any]:
    """Daemon bursts and raw SDK bursts, interleaved (daemon with stdin, file and env
    credential delivery, raw, raw with the daemon's create options; again...): medians,
    and the phases of every daemon round."""
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
        raw.append(baseline_burst(n, image=image))
        hardened.append(
            baseline_burst(n, options=hardened_kwargs(f"benchhard{i}", image), image=image)
        )
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


PLAN_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def planner_world(jobs: int, runners: int = 1000, pools: int = 20) -> dict[str, Any]:
    """A deterministic fleet: half GitLab, half GitHub pools with mixed platforms, runners
    in every state, and jobs drawing from 60 distinct tag sets (as a real queue does: a
    few job kinds, many jobs)."""
    rng = random.Random(15)
    specs = []
    for i in range(pools):
        github = i % 2 == 1
        specs.append(
            PoolSpec(
                name=f"pool{i}",
                forge="gh" if github else "gl",
                forge_kind=ForgeKind.GITHUB if github else ForgeKind.GITLAB,
                labels=frozenset({"docker", f"team{i % 7}"} | ({"gpu"} if i % 5 == 0 else set())),
                platform=("linux/amd64", "linux/arm64", "auto")[i % 3],
                run_untagged=i % 4 == 0,
                max_runners=500,
                min_idle=i % 2,
                max_idle=4,
                cooldown_s=300,
                ephemeral=True,
            )
        )
    vocab = ["docker", "gpu", "amd64", "arm64", "self-hosted", "linux", "X64"]
    vocab += [f"team{i}" for i in range(7)]
    tag_sets = [frozenset(rng.sample(vocab, rng.randint(0, 3))) for _ in range(60)]
    states = [s for s in RunnerState if s is not RunnerState.REMOVED]
    return {
        "jobs": [
            Job(
                forge=rng.choice(("gl", "gh")),
                id=str(i),
                scope=f"p{i % 50}",
                tags=rng.choice(tag_sets),
                created_at=PLAN_NOW - timedelta(seconds=rng.uniform(0, 3600)),
            )
            for i in range(jobs)
        ],
        "runners": [
            Runner(
                id=f"r{i}",
                name=f"r{i}",
                pool=f"pool{i % pools}",
                forge="gl" if i % pools % 2 == 0 else "gh",
                state=rng.choice(states),
                since=PLAN_NOW - timedelta(seconds=rng.uniform(0, 900)),
                created_at=PLAN_NOW - timedelta(hours=1),
            )
            for i in range(runners)
        ],
        "pools": specs,
        "now": PLAN_NOW,
        "global_max": 5000,
    }


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls after one warm-up, seconds: on a shared machine
    the minimum is the figure least disturbed by other processes (as ``timeit`` does)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def planner_scaling(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> list[dict[str, Any]]:
    """compute_plan against the per-job matching it replaced, same world, same run."""
    rows = []
    for size in sizes:
        world = planner_world(size)
        if compute_plan(**world) != reference_plan(**world):
            raise AssertionError(f"fast and reference plans differ at {size} jobs")
        fast = _best_of(lambda w=world: compute_plan(**w), 15 if size < 100_000 else 5)
        ref = _best_of(lambda w=world: reference_plan(**w), 3 if size < 100_000 else 2)
        rows.append(
            {
                "jobs": size,
                "runners": len(world["runners"]),
                "pools": len(world["pools"]),
                "distinct_tag_sets": len({j.tags for j in world["jobs"]}),
                "plan_ms": round(fast * 1000, 1),
                "reference_ms": round(ref * 1000, 1),
                "speedup": round(ref / fast, 1),
            }
        )
    return rows


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
        cpu0, t0 = _cpu(daemon), time.monotonic()
        time.sleep(seconds)
        state1, status1 = sim.state(), daemon.status()
        cpu1, t1 = _cpu(daemon), time.monotonic()
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
            "rss_mib": _rss_mib(daemon),
        }
        if kind == "github":
            used = state1.get("rate_limit_used", 0) - state0.get("rate_limit_used", 0)
            result["rate_limit_used_per_idle_hour"] = round(used * 3600 / (t1 - t0))
        return result
    finally:
        daemon.stop()
        sim.stop()
        cleanup_instance(instance)


def _as_github_app(sim_gh: Sim, forge: dict[str, Any], tmp: Path) -> None:
    """Make the GitHub forge of a config act as an App the simulator knows."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp / "bench-app.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {"app_id": "1", "public_key": public.decode(), "installation_id": 1}
    http("POST", f"{sim_gh.url}/_sim/apps", body)
    del forge["token"]
    forge.update(app_id="1", app_installation_id=1, app_private_key_file=str(pem))


def _watch_both(sim_gl: Sim, sim_gh: Sim, scopes: int) -> dict[str, Any]:
    """One daemon config watching ``scopes`` GitLab projects and ``scopes`` GitHub repos."""
    config = gitlab_config(sim_gl, [pool("p", ["docker"])], poll_interval=15)
    gh = github_config(sim_gh, [pool("q", ["self-hosted", "docker"])])["forges"][0]
    config["forges"][0]["projects"] = [str(i) for i in range(1, scopes + 1)]
    config["forges"][0]["requests_per_minute"] = 300
    gh["repos"] = [f"acme/r{i}" for i in range(scopes)]
    config["forges"].append(gh)
    config["pools"][0]["forge"] = "gitlab"
    config["pools"].append({**pool("q", ["self-hosted", "docker"]), "forge": "github"})
    for i in range(2, scopes + 1):
        http("POST", f"{sim_gl.url}/_sim/projects", {"id": i, "path": f"p{i}"})
    for i in range(scopes):
        http("POST", f"{sim_gh.url}/_sim/repos/acme/r{i}", {})
    return config


class ImageDaemon(Daemon):
    """The daemon with only its own dependencies importable, as in the image.

    A development environment also has ``rich`` (pulled in by test tools), and structlog
    imports it when present: about 3 MiB of RSS the image does not have. Hiding it makes
    the footprint the image's, not this checkout's.
    """

    def start(self) -> None:
        code = (
            "import sys; sys.modules['rich'] = None\n"
            "from orchestrator.cli import main\n"
            "raise SystemExit(main(['run']))"
        )
        self.process = Process(f"daemon-{self.instance}", [sys.executable, "-c", code], self.env)
        wait_for(self._healthy, 30, "daemon /health")


def footprint(tmp: Path, scopes: int = 100, seconds: float = 45) -> dict[str, Any]:
    """Idle RSS/CPU watching ``scopes`` projects + ``scopes`` repos, against 1 + 1; and
    the same with the GitHub forge authenticated as an App (which imports PyGithub)."""
    out: dict[str, Any] = {}
    for label, count in (("baseline", 1), ("watched", scopes), ("watched_app", scopes)):
        sim_gl, sim_gh = Sim("gitlab", SIM_TOKEN), Sim("github", GH_TOKEN)
        instance = f"benchfoot{label[-3:]}{count}"
        daemon = None
        try:
            config = _watch_both(sim_gl, sim_gh, count)
            if label == "watched_app":
                _as_github_app(sim_gh, config["forges"][1], tmp)
            daemon = ImageDaemon(tmp, instance, config)
            time.sleep(5)  # the first full pass
            cpu0, t0 = _cpu(daemon), time.monotonic()
            peak = 0.0
            deadline = t0 + seconds
            while time.monotonic() < deadline:
                time.sleep(3)
                peak = max(peak, _rss_mib(daemon))
            cpu1, t1 = _cpu(daemon), time.monotonic()
            out[label] = {
                "projects": count,
                "repos": count,
                "rss_mib": _rss_mib(daemon),
                "peak_rss_mib": peak,
                "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
                "reconciles": daemon.status()["reconcile"]["count"],
            }
        finally:
            if daemon is not None:
                daemon.stop()
            sim_gl.stop()
            sim_gh.stop()
            cleanup_instance(instance)
    out["ratio_rss"] = round(out["watched"]["rss_mib"] / out["baseline"]["rss_mib"], 2)
    return out


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


def _pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.proc.pid


def _cpu(daemon: Daemon) -> float:
    fields = Path(f"/proc/{_pid(daemon)}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _rss_mib(daemon: Daemon) -> float:
    for line in Path(f"/proc/{_pid(daemon)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def swarm_pickup(tmp: Path, n: int = 10) -> dict[str, Any]:
    """Swarm runtime (``python scripts/bench.py --swarm``): job queued -> the runner's task
    running, the job announced by a GitLab Job Hook (no poll wait), beside raw
    ``docker service create`` of the same image -> its task running, in the same run.
    Both are timed by polling task state every 20 ms. Prints its own JSON row."""
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


def machine() -> dict[str, Any]:
    info = client.info()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(info.get("MemTotal", 0) / 2**30, 1),
        "kernel": platform.release(),
        "docker_server": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "python": platform.python_version(),
        "image": TEST_IMAGE,
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


#: name -> what it measures; each returns the keys it adds to benchmarks.json.
SECTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "planner": lambda tmp: {"planner": planner_scaling()},
    "pickup": section_pickup,
    "burst": lambda tmp: {"burst50": burst(tmp)},
    "forge_cost": lambda tmp: {
        # 100 scopes: a window of several budget-bound intervals (30 s and more since
        # issue 15), so a round is not missed or counted twice by where the window falls
        "forge_cost": [
            forge_cost(tmp, k, n, 40 if n == 10 else 120)
            for k in ("gitlab", "github")
            for n in (10, 100)
        ]
    },
    "footprint": lambda tmp: {"footprint": footprint(tmp)},
    "pickup_defaults": section_pickup_defaults,
    # job queued -> task running on the Swarm runtime beside raw `docker service create`
    "swarm": lambda tmp: {"swarm_pickup": swarm_pickup(tmp)},
    # GitLab requests/min by class with 10/50/100 busy runners (in-process, fake clock)
    "gitlab_budget": lambda tmp: {"gitlab_budget": asyncio.run(gitlab_budget.rows())},
}


#: Sections whose figures from before issue 15's poll schedule stay beside the new ones.
BEFORE_KEPT = {"pickup_defaults": "pickup_defaults", "forge_cost": "forge_cost"}


def main() -> int:
    path = ROOT / "docs" / "benchmarks.json"
    if "--render" in sys.argv:  # rewrite the page from the last run's JSON, no measuring
        (ROOT / "docs" / "benchmarks.md").write_text(render(json.loads(path.read_text())))
        return 0
    only = list(SECTIONS)
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1].split(",")
        unknown = sorted(set(only) - set(SECTIONS))
        if unknown:
            print(f"unknown section(s) {unknown}; have {sorted(SECTIONS)}", file=sys.stderr)
            return 2
    partial = only != list(SECTIONS)
    results: dict[str, Any] = json.loads(path.read_text()) if partial and path.exists() else {}
    if "--no-build" not in sys.argv:  # on a shared engine, keep others' build of the image
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True)
    results["machine"] = machine()
    results["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results.setdefault("sections", {})
    with tempfile.TemporaryDirectory() as tmp_name:
        for name in only:
            # issue 15: keep the figures measured before the per-forge poll schedule, to
            # show beside the new ones (the first re-run after it keeps them; later ones too)
            key = BEFORE_KEPT.get(name)
            if key and key in results and f"{key}_before" not in results:
                results[f"{key}_before"] = results[key]
            load_before = os.getloadavg()[0]
            started = time.monotonic()
            results.update(SECTIONS[name](Path(tmp_name)))
            results["sections"][name] = {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started),
                # 1-minute load average before and after, against the core count
                "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            }
            print(f"{name}: done in {results['sections'][name]['seconds']} s", file=sys.stderr)
            # saved after every section, so a later section failing loses nothing before it
            path.write_text(json.dumps(results, indent=2) + "\n")
            (ROOT / "docs" / "benchmarks.md").write_text(render(results))
    print(json.dumps(results, indent=2))
    return 0


#: Burst phases in the order a spawn goes through them, with what each one is.
BURST_PHASES = [
    ("spawn semaphore wait", "waiting for one of the reconciler's 8 spawn slots"),
    ("journal write", "SQLite journal writes (5 per runner, on the event loop)"),
    ("forge register", "forge registration (simulator on loopback)"),
    ("runtime queue (semaphore + thread hand-off)", "waiting for a runtime worker thread"),
    ("docker create", "engine: create the container"),
    ("docker inspect", "engine: inspect after create and after start (2 calls)"),
    ("credential put_archive", "engine: copy the credential file in (file delivery)"),
    (
        "credential stdin attach+write",
        "engine: attach to stdin before start, write the credential after (stdin delivery)",
    ),
    ("docker start", "engine: start"),
    ("spawn total", "one runner, end to end (includes the semaphore wait)"),
]


def _load_note(r: dict[str, Any], names: list[str]) -> str:
    loads = [r.get("sections", {}).get(n, {}).get("load") for n in names]
    loads = [x for x in loads if x]
    if not loads:
        return ""
    top = max(max(x) for x in loads)
    cpus = r["machine"]["cpus"]
    if top <= cpus:
        return f"1-minute load average up to {top} on {cpus} cores."
    return (
        f"The 1-minute load average reached {top} on {cpus} cores (the bench's own "
        "containers, runners and simulators count, and any other work on the machine), "
        "so absolute times are inflated and noisy; the same-run baselines and ratios are "
        "the figures to read."
    )


def _when(r: dict[str, Any]) -> str:
    dates = sorted(v["date"] for v in r.get("sections", {}).values())
    if len(dates) > 1:
        return f"sections run between {dates[0]} and {dates[-1]}"
    return f"run on {r['date']}"


def _burst_rows(bu: dict[str, Any]) -> list[str]:
    """The burst rows of the main table: the default delivery first, then the others,
    then the raw SDK with the daemon's create options. A run from before stdin delivery
    (no ``stdin_delivery`` key) shows its file delivery as the default it then was."""
    default = "stdin" if "stdin_delivery" in bu else "file"
    d = bu[f"{default}_delivery"]
    base = f"SDK create+start {bu['jobs']}, {bu['concurrency']} at a time: {bu['baseline_sdk_s']} s"
    rows = [
        f"| burst of {bu['jobs']} queued jobs → {bu['jobs']} containers running "
        f"(median of {bu['rounds']} interleaved rounds), from the first job queued, "
        f"`CREDENTIAL_DELIVERY={default}` | {d['daemon_s']} s | {base} | {d['ratio']}× |",
        f"| same, from the poll that saw the jobs (median wait for it: "
        f"{d['poll_wait_s']} s of the 2 s interval) | {d['daemon_from_seen_s']} s | "
        f"as above | {d['ratio_from_seen']}× |",
    ]
    what = {
        "file": "`CREDENTIAL_DELIVERY=file` (`put_archive`)",
        "env": "`CREDENTIAL_DELIVERY=env` (credential in `docker inspect`)",
    }
    if "stdin_idle_runners" in bu:
        m = bu["stdin_idle_runners"]
        rows.append(
            "| same, runners that take no job (entrypoint and credential as above, then "
            "`sleep` like the raw baseline: the daemon's own cost, without 50 runners "
            f"starting up on the same 2 cores), from the poll that saw the jobs | "
            f"{m['daemon_from_seen_s']} s | as above | {m['ratio_from_seen']}× |"
        )
    for mode in ("file", "env"):
        if mode != default:
            m = bu[f"{mode}_delivery"]
            rows.append(
                f"| same with {what[mode]}, from the poll that saw the jobs | "
                f"{m['daemon_from_seen_s']} s | as above | {m['ratio_from_seen']}× |"
            )
    if "baseline_hardened_sdk_s" in bu:
        rows.append(
            f"| raw SDK create+start {bu['jobs']}, {bu['concurrency']} at a time, with the "
            f"daemon's create options (hardening; no daemon, no forge) | "
            f"{bu['baseline_hardened_sdk_s']} s | as above | {bu['baseline_hardened_ratio']}× |"
        )
    return rows


def _burst_breakdown(r: dict[str, Any], bu: dict[str, Any]) -> list[str]:
    """The "Where a burst's time goes" section."""
    modes = [m for m in ("stdin", "file", "env") if f"{m}_delivery" in bu]
    default = modes[0]
    raw_calls = bu["baseline_call_mean_ms"]
    hard_calls = bu.get("baseline_hardened_call_mean_ms")
    heads = [
        f"{m} delivery"
        + (" (default)" if m == "stdin" else " (the default in this run)" if m == default else "")
        for m in modes
    ]
    heads.append("raw SDK, 8 at a time")
    if hard_calls:
        heads.append("raw SDK with the daemon's create options")
    lines = [
        "",
        "### Where a burst's time goes",
        "",
        "Each daemon round runs under `scripts/bench_probe.py`, which wraps the journal, "
        "the provider, the runtime and the docker SDK's HTTP calls with timers. Per runner "
        f"(mean over the {bu['jobs']} runners of a round, median over rounds), milliseconds; "
        "the raw columns time the baselines' own calls in the same rounds (their create "
        "includes the SDK's inspect after create):",
        "",
        "| phase | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]

    def raw_cell(calls: dict[str, float], name: str) -> str:
        if name == "spawn total":
            return str(round(sum(calls.values()), 1))
        return str(calls.get(name, "–"))

    for name, what in BURST_PHASES:
        cells = [str(bu[f"{m}_delivery"]["phase_mean_ms"].get(name, "–")) for m in modes]
        cells.append(raw_cell(raw_calls, name))
        if hard_calls:
            cells.append(raw_cell(hard_calls, name))
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    d = bu[f"{default}_delivery"]
    recs = [len(x) for x in d["reconciles"]]
    samples = "; ".join(
        f"{m} delivery {bu[f'{m}_delivery']['samples_from_seen_s']} s" for m in modes
    )
    hardened = (
        f"; raw with the daemon's create options {bu['baseline_hardened_samples_s']} s"
        if hard_calls
        else ""
    )
    lines += [
        "",
        f"Reconciles per burst: {recs} (all {bu['jobs']} jobs were seen by one poll, and "
        f"one reconcile spawned them). Daemon samples (from the poll that saw the jobs): "
        f"{samples}; raw {bu['baseline_samples_s']} s{hardened}. " + _load_note(r, ["burst"]),
        "",
        "Reading it: raw create+start 8 at a time already saturates the engine, so the "
        "ratio follows how much engine work a runner costs beyond create+start. The "
        "daemon's own steps are small (journal writes, registration on loopback, waiting "
        "for a worker thread). (1) Credential delivery: file delivery's `put_archive` "
        f"({bu['file_delivery']['phase_mean_ms'].get('credential put_archive', '–')} ms per "
        "runner here) makes the engine mount the created container's filesystem and unpack "
        "the archive in a separate process. Stdin delivery, the default since issue 15, "
        "creates the container with stdin open (`StdinOnce`), attaches to its stdin before "
        "start and writes the credential right after it: no mount, no extra process, and "
        "the credential is still never in `docker inspect` (docs/runner-contract.md); env "
        "delivery shows the burst with no delivery at all, at the price of the credential "
        "in `docker inspect`. (2) In poll mode a burst first waits for the next poll "
        "(half an interval on average); the first row includes that wait, the others "
        "start at the poll. (3) The daemon's create options (init, memory and pids "
        "limits, dropped capabilities, log limits) cost the engine more than the raw "
        "baseline's bare create; the raw run with those options"
        + (
            f" ({bu['baseline_hardened_sdk_s']} s, {bu['baseline_hardened_ratio']}× the "
            "plain raw run) "
            if hard_calls
            else " (a column of its own since issue 15; not in this run) "
        )
        + "is that engine cost alone, so the distance between it and a daemon row is the "
        "daemon's own overhead (and the forge simulator's, which shares the cores with "
        "it). The plain raw run stays the goal baseline. (4) The raw baseline's "
        "containers run `sleep`; the daemon's runners start working as soon as they run "
        "(the test image's job-taking shim: token check, job request, a few shell "
        "forks each), so while the burst is still starting containers, 50 runners and "
        "the forge simulator answering them share the two cores with the engine. The "
        "'runners that take no job' row starts the same image, entrypoint and "
        "credential delivery with `sleep` in place of the shim: "
        + (
            f"{bu['stdin_idle_runners']['ratio_from_seen']}× raw, "
            if "stdin_idle_runners" in bu
            else ""
        )
        + "the daemon's own cost of a burst; the distance to the default row is the "
        "runners' start-up work, which a host with more cores than two absorbs.",
        "",
        "Changed after the first breakdown: the runtime ran at most 4 Docker calls at "
        "once, on asyncio's default thread pool (6 threads on 2 cores, shared with the "
        "forge providers), so calls waited about 200 ms each for a thread; it now runs "
        "8 (the spawn concurrency) on its own pool. Journal writes fsynced on the event "
        "loop (SQLite `synchronous=FULL`, 1.7 ms each quiet, 5-7 ms under load, 5 per "
        "runner); WAL with `synchronous=NORMAL` still commits each write before the "
        "action it guards, so a daemon crash loses nothing.",
    ]
    return lines


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"`python scripts/bench.py`, {_when(r)}: {m['cpus']} cores, "
        f"{m['memory_gib']} GiB, kernel {m['kernel']}, Docker Engine {m['docker_server']} "
        f"({m['storage_driver']}), Python {m['python']}, image `{m['image']}` (busybox). "
        "Raw figures and each section's date and load: [benchmarks.json](benchmarks.json). "
        "Every daemon figure stands beside a baseline measured in the same run.",
        "",
        "| what | daemon | baseline (same run) | ratio |",
        "|---|---|---|---|",
    ]
    if "pickup_poll_s" in r:
        b = r["baseline_create_start_s"]
        poll, hook = r["pickup_poll_s"], r["pickup_webhook_s"]
        lines += [
            f"| job queued → runner container running, poll mode (interval 2 s), p50 / p95 | "
            f"{poll['p50']} s / {poll['p95']} s | SDK create+start one container: "
            f"{b['p50']} s / {b['p95']} s | {poll['ratio_to_baseline_p50']}× |",
            f"| same, webhook mode (GitHub workflow_job, poll 120 s), p50 / p95 | "
            f"{hook['p50']} s / {hook['p95']} s | as above | "
            f"{hook['ratio_to_baseline_p50']}× |",
        ]
    if "pickup_defaults" in r:
        d = r["pickup_defaults"]
        before = {row["kind"]: row for row in r.get("pickup_defaults_before", {}).get("rows", [])}
        for row in d["rows"]:
            lines.append(
                f"| same, default settings, no webhooks ({row['kind']}, {row['watched']} "
                f"watched, poll {row['poll_interval_s']:g} s), p50 / p95 of "
                f"{len(row['samples'])} | {row['p50']} s / {row['p95']} s | SDK create+start "
                f"one container: {d['baseline_create_start_s']} s | "
                f"{row['ratio_to_baseline_p50']}× |"
            )
            old = before.get(row["kind"])
            if old and old is not row:
                lines.append(
                    f"| same, before the per-forge poll schedule (issue 15: fixed "
                    f"{old['poll_interval_s']:g} s poll), p50 / p95 of {len(old['samples'])} | "
                    f"{old['p50']} s / {old['p95']} s | new p50 above | "
                    f"{round(old['p50'] / max(row['p50'], 1e-9), 1)}× slower |"
                )
    if "burst50" in r and "file_delivery" in r["burst50"]:
        lines += _burst_rows(r["burst50"])
    for row in r.get("planner", []):
        lines.append(
            f"| planner: {row['jobs']:,} pending jobs × {row['runners']:,} runners × "
            f"{row['pools']} pools ({row['distinct_tag_sets']} distinct tag sets), fastest of "
            f"several | {row['plan_ms']} ms | the per-job matching it replaced, same inputs: "
            f"{row['reference_ms']} ms | {round(row['plan_ms'] / row['reference_ms'], 3)}× "
            f"({row['speedup']}× faster) |"
        )
    if "footprint" in r:
        fp = r["footprint"]
        w, b0 = fp["watched"], fp["baseline"]
        lines.append(
            f"| idle footprint watching {w['projects']} GitLab projects + {w['repos']} GitHub "
            f"repos, image dependencies only (see notes): RSS (peak) / CPU | {w['rss_mib']} MiB ({w['peak_rss_mib']}) / "
            f"{w['idle_cpu_percent']} % | the same daemon watching 1 + 1: {b0['rss_mib']} MiB "
            f"({b0['peak_rss_mib']}) / {b0['idle_cpu_percent']} % | {fp['ratio_rss']}× |"
        )
        if "watched_app" in fp:
            a = fp["watched_app"]
            lines.append(
                f"| same, GitHub authenticated as an App (PyGithub imported for its JWT) | "
                f"{a['rss_mib']} MiB ({a['peak_rss_mib']}) / {a['idle_cpu_percent']} % | "
                f"the same daemon watching 1 + 1 with a token: {b0['rss_mib']} MiB | "
                f"{round(a['rss_mib'] / b0['rss_mib'], 2)}× |"
            )
    if "burst50" in r and "file_delivery" in r["burst50"]:
        lines += _burst_breakdown(r, r["burst50"])
    if "forge_cost" in r:
        cost = {(c["kind"], c["scopes"]): c for c in r["forge_cost"]}
        lines += [
            "",
            "### Idle forge cost",
            "",
            "No jobs, default poll interval 15 s; GitLab budget 300 requests/min. Baseline: "
            "what polling every watched project (GitLab: 1 request) or repo (GitHub: 2, queued "
            "and in_progress) every interval would cost. Since issue 15 each forge is polled "
            "on a schedule derived from its budget (a third of it while idle, at most "
            "POLL_INTERVAL unless the budget cannot pay for that), GitLab through GraphQL "
            "(one request for up to 100 projects) and a quiet GitHub repository costs one "
            "request; 'requests / reconcile' no longer means per poll (polls and reconciles "
            "are apart). The 'before' column is the run before that change.",
            "",
            "| forge | watched | requests / reconcile | poll-everything baseline / reconcile | requests / idle hour | before issue 15's poll schedule / idle hour | rate limit used / idle hour | daemon CPU idle | daemon RSS |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        before = {(c["kind"], c["scopes"]): c for c in r.get("forge_cost_before", [])}
        for c in r["forge_cost"]:
            used = c.get("rate_limit_used_per_idle_hour", "n/a (GitLab has no hourly budget)")
            naive = c["scopes"] * (2 if c["kind"] == "github" else 1)
            old = before.get((c["kind"], c["scopes"]))
            was = (
                f"{old['requests_per_idle_hour']} "
                f"({round(c['requests_per_idle_hour'] / old['requests_per_idle_hour'], 2)}×)"
                if old and old is not c and old["requests_per_idle_hour"]
                else "-"
            )
            lines.append(
                f"| {c['kind']} | {c['scopes']} | {c['requests_per_reconcile']} | {naive} | "
                f"{c['requests_per_idle_hour']} | {was} | {used} | {c['idle_cpu_percent']} % | "
                f"{c['rss_mib']} MiB |"
            )
        gh100, gl100 = cost[("github", 100)], cost[("gitlab", 100)]
        lines += [
            "",
            "GitHub polls two run lists per repo (queued and in_progress); for 100 repos at "
            "the default 15 s interval that would be about 800 conditional requests a "
            "minute, near GitHub's secondary limit (900 points/min per endpoint), so the "
            "provider paces polls to GITHUB_REQUESTS_PER_MINUTE (600 by default): measured "
            f"{gh100['requests_per_idle_hour'] // 60} requests a minute here, none of them "
            "against the hourly budget (ETags: a 304 costs no rate limit). GitLab stays "
            "inside its request budget by polling only part of the projects each round when "
            "the budget cannot cover them all (100 projects: "
            f"{gl100['requests_per_reconcile']} requests per reconcile).",
        ]
    if "swarm_pickup" in r:
        sw = r["swarm_pickup"]
        ours, raw = sw["swarm_pickup_webhook_s"], sw["raw_service_create_to_running_s"]
        lines += [
            "",
            "### Swarm runtime: job queued to task running",
            "",
            "Webhook-driven; baseline: raw `docker service create` of the same image to "
            f"task running, same run (engine {sw['docker_server']}).",
            "",
            "| what | p50 s | p95 s | ratio p50 |",
            "|---|---|---|---|",
            f"| daemon, Swarm runtime | {ours['p50']} | {ours['p95']} | {sw['ratio_p50']} |",
            f"| raw service create | {raw['p50']} | {raw['p95']} | 1 |",
        ]
    if "gitlab_budget" in r:
        lines += gitlab_budget.section(r["gitlab_budget"])
    lines += [
        "",
        "### Notes",
        "",
        "Pickup latency is measured from the simulator accepting the job to the runner "
        "container reaching `running` (docker SDK polled every 20 ms); in poll mode it "
        "includes the wait for the next poll, so its mean is about half the interval. The "
        "default-settings rows queue each job at a random phase of the poll interval.",
        "",
        "The footprint row runs the daemon with only its own dependencies importable, as "
        "in the image: this checkout also has `rich` (pulled in by test tools), which "
        "structlog imports when present, adding about 3 MiB; the idle-cost table's RSS "
        "column is measured with it. Nearly all of the footprint is imports, not "
        "per-project state (1 + 1 and 100 + 100 watched differ by about a MiB): measured "
        "in import order, the interpreter 13.5 MiB, pydantic 5, structlog with the stdlib "
        "it pulls in 9, aiohttp 12, requests 6, the config models 8, docker, APScheduler, "
        "prometheus_client, python-gitlab and the daemon's modules about 10. PyGithub (with "
        "PyJWT and cryptography) adds 13.7 MiB at import, since its package imports all of "
        "its model classes; it is imported only for a GitHub App's JWT, so a daemon "
        "configured with tokens does not load it (the 'as an App' row shows the cost).",
        "",
        "The planner rows time `compute_plan` in-process on a generated fleet "
        "(`planner_world` in scripts/bench.py); the baseline is the same function with the "
        "per-job `match_pool` plugged back in (`tests/reference_planner.py`), and the bench "
        "checks both plans are equal before timing them.",
    ]
    note = _load_note(r, list(r.get("sections", {})))
    if note:
        lines += ["", note]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
