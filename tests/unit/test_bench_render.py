"""docs/benchmarks.md is what ``python scripts/bench.py --render`` makes of
docs/benchmarks.json, so the page and its figures cannot drift apart unnoticed.

Nothing here measures or touches Docker: only the renderer (a pure function of the saved
figures) and the command line's ``--render`` path are imported, and pages are written to
a temporary directory, never over the committed one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripts.benchlib import ROOT
from scripts.benchlib.cli import DATA, PAGE, render_page
from scripts.benchlib.render import render


def test_render_writes_the_page_the_renderer_returns(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"

    render_page(DATA, page)

    expected = render(json.loads(DATA.read_text()))
    assert page.read_text() == expected
    assert expected.startswith("# Benchmarks\n")
    assert expected.endswith("\n")


def test_the_committed_page_is_the_rendering_of_the_committed_figures() -> None:
    """Page and figures never drift: change the renderer, then re-render (or re-measure)."""
    assert PAGE.read_text() == render(json.loads(DATA.read_text()))


def test_render_imports_no_docker_client() -> None:
    # a fresh interpreter: this suite's other tests import docker themselves
    code = (
        "import sys; import scripts.benchlib.cli, scripts.benchlib.render; "
        "bad = sorted(m for m in ('docker', 'scripts.benchlib.common', "
        "'scripts.benchlib.sections') if m in sys.modules); "
        "sys.exit(f'--render imported {bad}' if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
