"""End to end with a GitHub App instead of a token: the daemon process, the GitHub
simulator (which knows only the App's public key; the PAT it starts with is not the
daemon's), a real runner container that takes the job; nothing is left behind and
neither the key nor an installation token reaches the daemon's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.appkeys import app_key_pair
from tests.conftest import scan_for_secrets
from tests.e2e.harness import (
    Daemon,
    Sim,
    containers,
    github_config,
    http,
    no_leaks,
    pool,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


def test_a_github_app_installation_serves_a_job_end_to_end(instance: str, tmp_path: Path) -> None:
    pem, public = app_key_pair()
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    key_file.chmod(0o400)

    sim = Sim("github", "ghp_the_daemon_does_not_have_this")
    try:
        code, body = http(
            "POST",
            f"{sim.url}/_sim/apps",
            {"app_id": "31337", "public_key": public, "installation_id": 4},
        )
        assert code == 200, body
        config = github_config(sim, [pool("linux", ["docker"])])
        forge = config["forges"][0]
        del forge["token"]
        forge.update(app_id="31337", app_installation_id=4, app_private_key_file=str(key_file))
        with no_leaks(instance):
            daemon = Daemon(tmp_path, instance, config)
            try:
                job = sim.add_job("acme/app", ["self-hosted", "linux", "x64", "docker"], 1)
                wait_for(
                    lambda: (
                        next(j for j in sim.jobs() if str(j["id"]) == job)["status"] == "completed"
                    ),
                    90,
                    "the job completed by an App-registered runner",
                )
                wait_for(lambda: not containers(instance), 60, "the runner container gone")
                (forge_status,) = daemon.status()["forges"]
                assert not forge_status["paused"] and not forge_status["error"], forge_status
                assert sim.state()["token_exchanges"] == 1  # one token served everything
            finally:
                daemon.stop()
            output = daemon.process.output()  # type: ignore[union-attr]
            assert "PRIVATE KEY" not in output
            assert scan_for_secrets(output) == []
    finally:
        sim.stop()
