"""``scripts/bench.py``'s command line: ``--only``, ``--no-build`` and ``--render``, read
from ``sys.argv`` as they are (no parser: any other argument is ignored, and a run without
``--render`` measures), and the merge of each section's figures into docs/benchmarks.json.

``--render`` imports no section, so it needs no Docker Engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.benchlib import ROOT
from scripts.benchlib.render import render

#: The saved figures and the page rendered from them.
DATA = ROOT / "docs" / "benchmarks.json"
PAGE = ROOT / "docs" / "benchmarks.md"


def render_page(data: Path = DATA, page: Path = PAGE) -> None:
    """``--render``: rewrite the page from the saved figures, no measuring."""
    page.write_text(render(json.loads(data.read_text())))


def main() -> int:
    if "--render" in sys.argv:  # rewrite the page from the last run's JSON, no measuring
        render_page()
        return 0
    from scripts.benchlib.common import machine
    from scripts.benchlib.sections import BEFORE_KEPT, SECTIONS

    only = list(SECTIONS)
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1].split(",")
        unknown = sorted(set(only) - set(SECTIONS))
        if unknown:
            print(f"unknown section(s) {unknown}; have {sorted(SECTIONS)}", file=sys.stderr)
            return 2
    partial = only != list(SECTIONS)
    results: dict[str, Any] = json.loads(DATA.read_text()) if partial and DATA.exists() else {}
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
            DATA.write_text(json.dumps(results, indent=2) + "\n")
            PAGE.write_text(render(results))
    print(json.dumps(results, indent=2))
    return 0
