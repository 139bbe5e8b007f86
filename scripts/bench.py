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
  repos at once, against the same daemon watching one of each;
* ``swarm``: job queued -> runner task running on the Swarm runtime (webhook-driven),
  against raw ``docker service create`` of the same image;
* ``gitlab_budget``: GitLab requests per minute by class with 10/50/100 busy runners
  (``scripts/gitlab_budget.py``, in-process).

This file is the entry point only: the sections, the command line and the page's renderer
are the modules of ``scripts/benchlib/`` (its docstring lists them).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.benchlib.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
