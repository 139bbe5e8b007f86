"""The sections, plumbing and page renderer behind ``scripts/bench.py`` (its docstring
says how to run it; this package is not imported by the daemon or its tests, except
:mod:`scripts.benchlib.render`, which the unit tests use to keep docs/benchmarks.md and
docs/benchmarks.json in step).

* :mod:`.common`: the Docker client, running-container counts, percentiles, the raw
  create+start baseline, the daemon process's CPU and RSS, the machine description;
* :mod:`.burst`: the ``burst`` section (daemon bursts under ``scripts/bench_probe.py``
  beside raw SDK bursts, and the phase breakdown from the probe's records);
* :mod:`.pickup`: the ``pickup`` and ``pickup_defaults`` sections;
* :mod:`.planner_bench`: the ``planner`` section (in-process, no Docker);
* :mod:`.idle`: the ``forge_cost`` section (forge requests of an idle daemon);
* :mod:`.footprint`: the ``footprint`` section (idle RSS and CPU);
* :mod:`.swarm_bench`: the ``swarm`` section;
* :mod:`.render`: docs/benchmarks.md from the saved figures (no Docker, no I/O);
* :mod:`.sections`: the section table (the names ``--only`` accepts);
* :mod:`.cli`: the argument handling, ``--render`` and the JSON merge.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (the bench reads and writes docs/ under it).
ROOT = Path(__file__).resolve().parents[2]
