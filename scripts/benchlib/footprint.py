"""The ``footprint`` section: the daemon's idle RSS and CPU watching 100 GitLab projects
and 100 GitHub repos (with tokens, and with GitHub as an App), against 1 + 1."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from scripts.benchlib.common import cpu_seconds, rss_mib
from tests.e2e.harness import (
    GH_TOKEN,
    SIM_TOKEN,
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
            cpu0, t0 = cpu_seconds(daemon), time.monotonic()
            peak = 0.0
            deadline = t0 + seconds
            while time.monotonic() < deadline:
                time.sleep(3)
                peak = max(peak, rss_mib(daemon))
            cpu1, t1 = cpu_seconds(daemon), time.monotonic()
            out[label] = {
                "projects": count,
                "repos": count,
                "rss_mib": rss_mib(daemon),
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
