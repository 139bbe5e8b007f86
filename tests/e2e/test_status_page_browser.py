"""What a person sees: the status page in a real browser (headless Chromium).

The daemon runs as a process against the GitLab simulator with real runner containers.
One pool with room for one runner gets two long jobs: one runner is busy, the other job
waits because the pool is at its max. A third job, named like a script and tagged with
quotes, matches no pool. Chromium loads ``/``, runs the page's own script (which
refreshes the live part), and the test reads the DOM Chromium built, not our HTML: the
busy runner, each waiting job with its reason in words, the evil name as text and no
script but the page's own. The screenshot in docs/ is taken from the same page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.e2e.harness import (
    ROOT,
    Daemon,
    Sim,
    gitlab_config,
    http,
    no_leaks,
    pool,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

EVIL = "<script>alert(1)</script>"
#: The docs' screenshot is refreshed only on request (RO_UPDATE_SCREENSHOT=1), so a test run
#: never leaves the checkout dirty; otherwise the shot goes to the session's log directory.
SCREENSHOT = (
    ROOT / "docs" / "status-page.png"
    if os.environ.get("RO_UPDATE_SCREENSHOT") == "1"
    else Path(os.environ.get("RO_TEST_LOG_DIR", "/tmp")) / "status-page.png"  # noqa: S108
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("NO CHROMIUM (Debian: apt-get install chromium): the browser test DID NOT RUN")
    raise AssertionError("unreachable")


def browse(url: str, *extra: str) -> str:
    """Chromium's DOM of ``url`` after its scripts ran for 12 s of virtual time."""
    with tempfile.TemporaryDirectory(prefix="ro-chromium-") as profile:
        result = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=12000",
                "--window-size=1100,1000",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Dom(HTMLParser):
    """Elements and visible text of the DOM Chromium dumped."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in {"script", "style"}:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())

    def by_id(self, ident: str) -> dict[str, str | None] | None:
        return next((a for t, a in self.elements if a.get("id") == ident), None)


def add_job(sim: Sim, tags: list[str], duration: float, name: str = "") -> str:
    status, body = http(
        "POST",
        f"{sim.url}/_sim/projects/1/jobs",
        {"tags": tags, "duration": duration, "name": name},
    )
    assert status in (200, 201), body
    return str(body["id"])


def test_a_person_sees_the_busy_runner_and_why_jobs_wait(
    gitlab_sim: Sim, instance: str, tmp_path: Path
) -> None:
    chromium()  # skip loudly before starting anything when there is no browser
    config = gitlab_config(gitlab_sim, [pool("builds", ["docker"], max_runners=1)])
    env = {
        "SHUTDOWN_MODE": "drain",
        "SHUTDOWN_TIMEOUT": "5",
        "MANAGEMENT_ENABLED": "true",
        "MANAGEMENT_TOKEN": "mgmt-secret-token",
    }
    with no_leaks(instance):
        daemon = Daemon(tmp_path, instance, config, env=env)
        try:
            first = add_job(gitlab_sim, ["docker"], 120, name="build")
            wait_for(
                lambda: any(r["state"] == "busy" for r in daemon.get("/runners")[1]["runners"]),
                90,
                "a busy runner",
            )
            second = add_job(gitlab_sim, ["docker"], 120, name="test")
            add_job(gitlab_sim, ["windows", 'say "hi"'], 120, name=EVIL)

            def reasons() -> set[str]:
                return {w["reason"] for w in daemon.status()["waiting_jobs"]}

            wait_for(lambda: reasons() == {"pool_at_max", "no_matching_pool"}, 60, "both waits")

            dom = Dom(browse(daemon.url + "/", "--dump-dom"))
            seen = dom.visible()
            # The busy runner: its state and the job it runs.
            runner_row = re.search(r"ro-\S+-builds-\S+ builds (\w+) \d+ s (\S+) local", seen)
            assert runner_row is not None, seen
            assert runner_row.groups() == ("busy", first), seen
            # Each waiting job with its reason in words.
            assert f"gitlab:{second}" in seen
            assert "pool builds is at its maximum number of runners" in seen
            assert "no pool has all of its tags" in seen
            # Forge-supplied text stays text: the evil job name is shown, never run.
            assert EVIL in seen and 'say "hi"' in seen
            scripts = [a for t, a in dom.elements if t == "script"]
            assert len(scripts) == 1, "only the page's own script is in the DOM"
            # The page's own script ran under its CSP and refreshed the live part.
            assert "updated" in seen, "the live part was not refreshed by the page script"

            # The runner's own page: its history, and no log tail without the token.
            (busy,) = [r for r in daemon.get("/runners")[1]["runners"] if r["state"] == "busy"]
            runner_dom = Dom(browse(f"{daemon.url}/runners/{busy['id']}", "--dump-dom"))
            history = runner_dom.visible()
            assert "History" in history and "busy" in history and "registered" in history
            assert runner_dom.by_id("logs-form") is not None  # asks for the token
            assert "never stored" in history  # the log area holds only the hint

            SCREENSHOT.parent.mkdir(exist_ok=True)
            browse(daemon.url + "/", f"--screenshot={SCREENSHOT}", "--hide-scrollbars")
            assert SCREENSHOT.stat().st_size > 10_000
        finally:
            daemon.stop()
