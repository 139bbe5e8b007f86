"""The compose path for real: image built without a registry, `docker-compose up`, runners.

1. The daemon image is built from ./Dockerfile on a local base made with debootstrap
   (scripts/build-base-image.sh, cached) and a host-side wheelhouse
   (scripts/build-wheelhouse.sh): on this project's machines `docker build` reaches PyPI
   only through a TLS proxy the build containers do not trust, so pip runs offline
   (PIP_NO_INDEX=1) from wheels the host downloaded.
2. compose.yaml as shipped (plus a test override that only picks a free published port
   and a fast health-check interval): /health answers through the published port, the
   container turns healthy, runs as uid 10001 and reaches the Docker socket through
   DOCKER_GID, and stops cleanly on SIGTERM.
3. compose.yaml with a test override that puts the daemon on the host network (so it and
   its host-network runners reach the forge simulator on 127.0.0.1; Docker 20.10 has no
   other portable way in), RUNNER_IMAGE = the test runner image and a YAML pool with
   `network: host` allowed by the ceiling: a queued job gets a runner container that runs
   it. Then the documented life cycle: an upgrade (`up -d --force-recreate`, default
   SHUTDOWN_MODE=leave) keeps the busy runner, which the new daemon adopts from the state
   volume; switching to SHUTDOWN_MODE=drain and `docker-compose down` leaves no runner
   container and no forge registration behind.

Everything created is labelled or named per run and removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import scan_for_secrets
from tests.deploy.support import COMPOSE_FILE, REPO, free_port, need_tool, run, wait_for

# The first test also builds the image (about 70 s; plus about 100 s for the base once).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

BASE_IMAGE = "runner-orchestrator/base-python:bookworm"
TEST_RUNNER_IMAGE = "runner-orchestrator/test-runner:latest"
IMAGE_REPO = "runner-orchestrator/orchestrator"
#: Set to 1 to keep the built daemon image and its build cache between runs (faster).
KEEP_IMAGES = os.environ.get("RO_KEEP_TEST_IMAGES") == "1"
SIM_TOKEN = "glpat-testtoken0123456789"  # in tests.conftest.TEST_SECRETS
MANAGED = "io.runner-orchestrator.managed"


def _docker_problem() -> str:
    if shutil.which("docker") is None:
        return "no docker CLI"
    probe = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return "" if probe.returncode == 0 else f"no Docker Engine answers: {probe.stderr.strip()}"


def _docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    return run(["docker", *args], check=check, timeout=timeout).stdout.strip()


def _http(url: str, timeout: float = 5) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _prerequisite(what: str, script: str, timeout: float) -> None:
    """Run a helper script; when it cannot do its job here, skip loudly with its output."""
    proc = run(["bash", str(REPO / "scripts" / script)], timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        pytest.skip(f"DOCKER DEPLOY TESTS NOT RUN: could not make {what}: {' | '.join(tail)}")


@pytest.fixture(scope="module")
def daemon_image() -> Iterator[str]:
    """The daemon image, built from ./Dockerfile with no registry; removed afterwards."""
    problem = _docker_problem()
    if problem:
        pytest.skip(f"DOCKER DEPLOY TESTS NOT RUN: {problem}")
    need_tool("docker-compose", "apt-get install -y docker-compose")
    if (
        subprocess.run(
            ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False
        ).returncode
        != 0
    ):
        need_tool("debootstrap", "apt-get install -y debootstrap; builds the local base image")
        started = time.monotonic()
        _prerequisite("the local base image", "build-base-image.sh", timeout=900)
        print(f"\nbase image {BASE_IMAGE} built in {time.monotonic() - started:.0f}s")
    _prerequisite("the wheelhouse (needs PyPI on the host)", "build-wheelhouse.sh", timeout=600)
    tag = f"{IMAGE_REPO}:deploytest-{secrets.token_hex(4)}"
    started = time.monotonic()
    run(
        [
            "docker", "build", "--quiet", "--tag", tag,
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--build-arg", "PIP_NO_INDEX=1",
            str(REPO),
        ],
        timeout=900,
    )  # fmt: skip
    print(f"\ndaemon image {tag} built in {time.monotonic() - started:.0f}s")
    try:
        yield tag
    finally:
        if not KEEP_IMAGES:
            _docker("rmi", "--force", tag, check=False)
            # The build stage's intermediate images (labelled in the Dockerfile) stay
            # behind untagged as build cache: remove ours too.
            stale = _docker(
                "images", "--quiet", "--filter", "dangling=true",
                "--filter", "label=io.runner-orchestrator.build-stage=true", check=False,
            ).split()  # fmt: skip
            if stale:
                _docker("rmi", *stale, check=False)


@pytest.fixture(scope="module")
def test_runner_image(daemon_image: str) -> str:
    """The registry-free runner image (scripts/build-test-image.sh), shared with the suite."""
    if (
        subprocess.run(
            ["docker", "image", "inspect", TEST_RUNNER_IMAGE], capture_output=True, check=False
        ).returncode
        != 0
    ):
        script = REPO / "scripts" / "build-test-image.sh"
        if not script.exists():
            pytest.skip(f"NOT RUN: {script} is missing and {TEST_RUNNER_IMAGE} is not built")
        run(["sh", str(script)], timeout=300)
    return TEST_RUNNER_IMAGE


class ComposeProject:
    """One `docker-compose -p <unique>` project over compose.yaml.

    ``override`` is merged as a second ``-f`` file. ``host_network`` instead derives one
    file from compose.yaml's resolved config (``docker-compose config``) with the daemon
    moved to the host network: docker-compose 1.29 refuses ``network_mode: host`` next to
    the published port, and an override cannot remove ``ports`` there (v2's ``!reset``).
    """

    def __init__(
        self,
        tmp_path: Path,
        image: str,
        env_lines: dict[str, str],
        port: int,
        override: dict[str, Any] | None = None,
        host_network: dict[str, Any] | None = None,
    ) -> None:
        self.name = f"rodeploy{secrets.token_hex(4)}"
        self.instance = env_lines["INSTANCE_ID"]
        self.port = port
        self.tmp_path = tmp_path
        self.env_lines = dict(env_lines)
        self.env_file = tmp_path / "daemon.env"
        gid = os.stat("/var/run/docker.sock").st_gid
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_GID"))
        }
        self.env.update(
            ENV_FILE=str(self.env_file),
            DOCKER_GID=str(gid),
            ORCHESTRATOR_IMAGE=image,
            ORCHESTRATOR_PORT=str(port),
        )
        self.override = override
        self.host_network = host_network
        self._write_files()

    def _write_files(self) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env_lines.items()))
        self.files = [COMPOSE_FILE]
        if self.override is not None:
            self.files.append(self.tmp_path / "compose.override.yaml")
            self.files[-1].write_text(yaml.safe_dump(self.override, sort_keys=False))
        if self.host_network is not None:
            config = yaml.safe_load(self.compose("config"))
            daemon = config["services"]["orchestrator"]
            del daemon["ports"]
            daemon["network_mode"] = "host"
            daemon["environment"].update(self.host_network.get("environment", {}))
            daemon["volumes"] += self.host_network.get("volumes", [])
            derived = self.tmp_path / "compose.host-network.yaml"
            derived.write_text(yaml.safe_dump(config, sort_keys=False))
            self.files = [derived]

    def set_env(self, **changes: str) -> None:
        """Edit the daemon's env file (as an admin edits .env); `up -d` then recreates it."""
        self.env_lines.update(changes)
        self._write_files()

    def compose(self, *args: str, timeout: float = 180, check: bool = True) -> str:
        files = [arg for f in self.files for arg in ("-f", str(f))]
        cmd = ["docker-compose", "-p", self.name, *files]
        return run([*cmd, *args], env=self.env, timeout=timeout, check=check).stdout

    def container_id(self) -> str:
        return self.compose("ps", "-q", "orchestrator").strip()

    def inspect(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(_docker("inspect", self.container_id()))
        return data[0]

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "orchestrator", check=False)

    def runner_containers(self) -> list[str]:
        return _docker(
            "ps", "-a", "--quiet", "--filter", f"label={MANAGED}",
            "--filter", f"label=io.runner-orchestrator.instance={self.instance}",
        ).split()  # fmt: skip

    def get(self, path: str) -> tuple[int, Any]:
        return _http(f"http://127.0.0.1:{self.port}{path}")

    def clean_up(self) -> list[str]:
        """Remove everything this project or its daemon made; return unexpected leftovers.

        The daemon's per-instance bridge network is kept by design when it stops (the next
        start adopts it with the runners), so it is removed here without complaint.
        """
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        leftovers = []
        flt = f"label=io.runner-orchestrator.instance={self.instance}"
        containers = _docker("ps", "-a", "--quiet", "--filter", flt, check=False).split()
        volumes = _docker("volume", "ls", "--quiet", "--filter", flt, check=False).split()
        networks = _docker("network", "ls", "--quiet", "--filter", flt, check=False).split()
        leftovers += [f"container {c[:12]}" for c in containers]
        leftovers += [f"volume {v[:12]}" for v in volumes]
        if containers:
            _docker("rm", "--force", "--volumes", *containers, check=False)
        if volumes:
            _docker("volume", "rm", "--force", *volumes, check=False)
        if networks:
            _docker("network", "rm", *networks, check=False)
        return leftovers


def _instance_id() -> str:
    return "rodeploy" + secrets.token_hex(4)  # INSTANCE_ID: at most 16 of [a-z0-9]


def test_the_image_reaches_ssh_hosts_with_its_own_ssh_client(daemon_image: str) -> None:
    """``ssh://`` Docker hosts run the system ssh (tests/docker/test_ssh_host.py); the
    image must have it, and the daemon user's home, where ssh reads its keys and
    known_hosts, must be /data (docs/deployment.md)."""
    version = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "ssh", daemon_image, "-V"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and "OpenSSH" in version.stderr, version
    home = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", daemon_image, "-c", "echo ~"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert home.stdout.strip() == "/data"


def test_compose_up_serves_health_on_the_published_port_as_an_unprivileged_user(
    daemon_image: str, tmp_path: Path
) -> None:
    instance = _instance_id()
    project = ComposeProject(
        tmp_path,
        daemon_image,
        {
            # No forge answers inside the container: the daemon must still be alive and
            # say why it is not ready.
            "GITLAB_URL": "http://127.0.0.1:9",
            "GITLAB_TOKEN": SIM_TOKEN,
            "GITLAB_PROJECTS": "1",
            "INSTANCE_ID": instance,
            "POLL_INTERVAL": "2",
            "SHUTDOWN_TIMEOUT": "5",
        },
        port=free_port(),
        # Only what a test must change: a fast health check instead of every 30 s.
        override={
            "services": {"orchestrator": {"healthcheck": {"interval": "2s", "start_period": "1s"}}}
        },
    )
    try:
        project.compose("up", "-d", "--no-build")
        status, body = wait_for(
            "/health through the published port",
            lambda: (r := project.get("/health"))[0] == 200 and r,
            timeout=60,
        )
        assert body["status"] == "ok"
        info = project.inspect()
        assert info["Config"]["User"] == "10001:10001"
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        bindings = info["HostConfig"]["PortBindings"]["8080/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(project.port)}]
        # The non-root daemon reaches the Docker socket through DOCKER_GID...
        metrics = wait_for(
            "docker_host_up 1 in /metrics",
            lambda: (
                'runner_orchestrator_docker_host_up{host="local"} 1.0'
                in (m := project.get("/metrics")[1])
                and m
            ),
            timeout=30,
        )
        assert "runner_orchestrator_forge_up" in metrics
        # ...and reports the unreachable forge instead of dying.
        ready_status, ready = project.get("/ready")
        assert ready_status == 503 and not ready["ready"], ready
        status_code, snapshot = project.get("/status")
        assert status_code == 200 and snapshot, snapshot
        # The documented way to validate settings: a one-off container, secrets masked.
        checked = project.compose("run", "--rm", "--no-deps", "orchestrator", "check-config")
        assert "gitlab_url: http://127.0.0.1:9" in checked
        assert SIM_TOKEN not in checked and "'**********'" in checked
        wait_for(
            "Docker's health check to report healthy",
            lambda: project.inspect()["State"]["Health"]["Status"] == "healthy",
            timeout=40,
        )
        # SIGTERM (compose stop) ends the daemon cleanly: exit code 0, not a kill.
        project.compose("stop", timeout=90)
        state = project.inspect()["State"]
        assert state["ExitCode"] == 0, (state, project.logs()[-3000:])
        assert scan_for_secrets(project.logs()) == []
    finally:
        leftovers = project.clean_up()
    assert leftovers == [], leftovers


@pytest.fixture
def forgesim() -> Iterator[str]:
    """`python -m tests.forgesim gitlab` on a free loopback port; its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.forgesim", "gitlab", "--port", str(port),
         "--token", SIM_TOKEN],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the forge simulator", lambda: _http(f"{url}/_sim/state")[0] == 200, timeout=20)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _sim_state(sim: str) -> dict[str, Any]:
    status, body = _http(f"{sim}/_sim/state")
    assert status == 200
    return dict(body)


def _job(sim: str, job_id: int) -> dict[str, Any]:
    return next(j for j in _sim_state(sim)["jobs"] if j["id"] == job_id)


def _upgrade_and_check_adoption(
    project: ComposeProject, sim: str, job_id: int, runners: set[str], *, recreate: bool = True
) -> None:
    before = project.container_id()
    project.compose("up", "-d", "--no-build", *(["--force-recreate"] if recreate else []))
    assert project.container_id() != before, "the daemon container was not replaced"
    wait_for("/health after the restart", lambda: project.get("/health")[0] == 200, timeout=60)
    assert runners <= set(project.runner_containers()), "a runner did not survive the restart"
    assert _job(sim, job_id)["status"] == "running"
    wait_for(
        "the busy runner to be adopted",
        lambda: any(r["state"] == "busy" for r in project.get("/runners")[1]["runners"]),
        timeout=30,
    )


def test_compose_stack_runs_a_queued_job_and_drains_on_down(
    daemon_image: str, test_runner_image: str, forgesim: str, tmp_path: Path
) -> None:
    instance = _instance_id()
    port = free_port()
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        yaml.safe_dump(
            {
                "ceiling": {"allow_host_network": True},
                "pools": [
                    {
                        "name": "deploy",
                        "labels": ["deploy-test"],
                        "network": "host",  # the runner reaches the simulator on 127.0.0.1
                        "memory": "256m",
                        "pids_limit": 256,
                        "max_runners": 3,
                        "cooldown_s": 300,
                    }
                ],
            }
        )
    )
    pools.chmod(0o644)  # read by uid 10001 in the container
    project = ComposeProject(
        tmp_path,
        daemon_image,
        {
            "GITLAB_URL": forgesim,
            "GITLAB_TOKEN": SIM_TOKEN,
            "GITLAB_PROJECTS": "1",
            "GITLAB_REQUESTS_PER_MINUTE": "600",
            "RUNNER_IMAGE": test_runner_image,
            "CONFIG_FILE": "/config/pools.yaml",
            "INSTANCE_ID": instance,
            "POLL_INTERVAL": "2",
            "SHUTDOWN_MODE": "leave",  # the default; drain is switched on below
            "SHUTDOWN_TIMEOUT": "8",
        },
        port=port,
        # The only way from the container to a simulator on the host's loopback (and
        # the runners use the same URL). Published ports do not apply on the host
        # network, so the API listens on a free loopback port of the host instead.
        host_network={
            "environment": {"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port)},
            "volumes": [f"{pools}:/config/pools.yaml:ro"],
        },
    )
    quick = _post(f"{forgesim}/_sim/projects/1/jobs", {"tags": ["deploy-test"], "duration": 2})
    try:
        project.compose("up", "-d", "--no-build")
        wait_for("/health of the host-network daemon", lambda: project.get("/health")[0] == 200,
                 timeout=60)  # fmt: skip
        # The queued job gets a runner container, which takes the job and reports success.
        wait_for("a runner container for the queued job", project.runner_containers, timeout=60)
        wait_for(
            "the job to be run by the runner",
            lambda: _job(forgesim, quick["id"])["status"] == "success",
            timeout=60,
        )
        status, listed = project.get("/runners")
        assert status == 200 and listed["runners"], listed
        assert {r["pool"] for r in listed["runners"]} == {"deploy"}

        # A long job keeps a runner busy; drain must still leave nothing behind.
        slow = _post(f"{forgesim}/_sim/projects/1/jobs", {"tags": ["deploy-test"], "duration": 600})
        wait_for(
            "a runner to take the long job",
            lambda: _job(forgesim, slow["id"])["status"] == "running",
            timeout=60,
        )
        busy = set(project.runner_containers())
        assert busy

        # Upgrade as documented: the container is replaced, the state volume stays, and
        # with SHUTDOWN_MODE=leave the runners keep running and are adopted.
        _upgrade_and_check_adoption(project, forgesim, slow["id"], busy)

        # Uninstall as documented: switch to drain (`up -d` recreates the daemon, which
        # adopts the runners again), then `docker-compose down`.
        project.set_env(SHUTDOWN_MODE="drain")
        _upgrade_and_check_adoption(project, forgesim, slow["id"], busy, recreate=False)
        # `docker-compose down` itself (SIGTERM, stop_grace_period applies). The
        # container's log is followed into a file, as down removes the container.
        log_file = tmp_path / "daemon.log"
        with log_file.open("w") as sink:
            follower = subprocess.Popen(
                ["docker", "logs", "--follow", project.container_id()],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            started = time.monotonic()
            project.compose("down", "--volumes", timeout=180)
            took = time.monotonic() - started
            follower.wait(timeout=30)
        logs = log_file.read_text()
        assert project.runner_containers() == [], "drain left runner containers behind"
        assert _sim_state(forgesim)["runners"] == [], "drain left forge registrations behind"
        assert '"daemon.stopped"' in logs, f"no clean shutdown:\n{logs[-3000:]}"
        assert took < 120, f"down took {took:.0f}s, more than stop_grace_period"
        assert scan_for_secrets(logs) == []
    except BaseException:
        print(project.logs()[-6000:])
        raise
    finally:
        leftovers = project.clean_up()
    assert leftovers == [], leftovers
