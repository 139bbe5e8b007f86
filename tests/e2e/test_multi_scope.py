"""End to end: several repositories (GitHub, no org) or projects (GitLab) watched by one
forge. A job in the SECOND one gets a runner registered where the job is, takes it and
completes. The simulators hand a repo-level/project runner only its own scope's jobs (as
the forges do), so a runner registered in the first scope would never take it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import (
    Daemon,
    Sim,
    containers,
    github_config,
    gitlab_config,
    http,
    job_status,
    no_leaks,
    pool,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


def test_a_github_job_in_the_second_repository_is_taken_and_completes(
    github_sim: Sim, instance: str, tmp_path: Path
) -> None:
    status, body = http("POST", f"{github_sim.url}/_sim/repos/acme/lib", {})
    assert status in (200, 201), body
    config = github_config(github_sim, [pool("linux", ["docker"])])
    config["forges"][0]["repos"] = ["acme/app", "acme/lib"]
    with no_leaks(instance):
        daemon = Daemon(tmp_path, instance, config)
        try:
            job = github_sim.add_job("acme/lib", ["self-hosted", "linux", "x64", "docker"], 1)
            wait_for(lambda: job_status(github_sim, job) == "completed", 90, "acme/lib job done")
            wait_for(
                lambda: not github_sim.state()["runners"] and not containers(instance),
                60,
                "JIT registration and container gone",
            )
            (row,) = daemon.get("/runners")[1]["runners"]
            assert row["state"] == "removed" and row["exit_code"] == 0
        finally:
            daemon.stop()


def test_a_gitlab_job_in_the_second_project_is_taken_and_completes(
    gitlab_sim: Sim, instance: str, tmp_path: Path
) -> None:
    status, body = http("POST", f"{gitlab_sim.url}/_sim/projects", {"id": 2, "path": "lib"})
    assert status in (200, 201), body
    config = gitlab_config(gitlab_sim, [pool("docker", ["docker"])])
    config["forges"][0]["projects"] = ["1", "2"]
    with no_leaks(instance):
        daemon = Daemon(tmp_path, instance, config)
        try:
            job = gitlab_sim.add_job("2", ["docker"], duration=1)
            wait_for(lambda: job_status(gitlab_sim, job) == "success", 90, "project 2 job done")
            wait_for(
                lambda: not gitlab_sim.state()["runners"] and not containers(instance),
                60,
                "runner deleted and container removed",
            )
        finally:
            daemon.stop()


def test_a_runner_left_idle_in_one_project_does_not_hold_off_a_job_in_another(
    gitlab_sim: Sim, instance: str, tmp_path: Path
) -> None:
    """Project 1's job is cancelled before its runner can take it (the runners' job
    requests fail meanwhile), so that runner idles in project 1. A job in project 2 must
    get its own runner and complete while the idle one waits out its (long) cooldown.
    Before the journal knew runner scopes, the idle runner counted as free for project
    2's job and nothing was created until that runner exited on its own idle timeout."""
    status, body = http("POST", f"{gitlab_sim.url}/_sim/projects", {"id": 2, "path": "lib"})
    assert status in (200, 201), body
    config = gitlab_config(
        gitlab_sim, [pool("docker", ["docker"], cooldown_s=600)], shutdown_mode="drain"
    )
    config["forges"][0]["projects"] = ["1", "2"]
    blocked = {"kind": "status", "status": 503, "match": "/jobs/request", "seconds": 120}
    status, body = http("POST", f"{gitlab_sim.url}/_sim/faults", blocked)
    assert status == 200, body
    with no_leaks(instance):
        daemon = Daemon(tmp_path, instance, config)
        try:
            first = gitlab_sim.add_job("1", ["docker"], duration=1)
            wait_for(
                lambda: [r["state"] for r in daemon.get("/runners")[1]["runners"]] == ["idle"],
                60,
                "project 1's runner idle",
            )
            status, body = http(
                "POST", f"{gitlab_sim.url}/_sim/jobs/{first}", {"status": "canceled"}
            )
            assert status == 200, body
            status, body = http("DELETE", f"{gitlab_sim.url}/_sim/faults")
            assert status == 200, body

            job = gitlab_sim.add_job("2", ["docker"], duration=1)
            wait_for(lambda: job_status(gitlab_sim, job) == "success", 60, "project 2 job done")
            rows = daemon.get("/runners")[1]["runners"]
            # Project 2's runner came and went; project 1's still idles (cooldown 600 s).
            assert sorted((r["scope"], r["state"]) for r in rows) in (
                [("1", "idle"), ("2", "busy")],
                [("1", "idle"), ("2", "draining")],
                [("1", "idle"), ("2", "idle")],
                [("1", "idle"), ("2", "removed")],
            ), rows
        finally:
            daemon.stop()  # shutdown_mode drain: the idle runner is unregistered and removed
        assert not gitlab_sim.state()["runners"]
