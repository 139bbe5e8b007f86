"""End-to-end harness: the forge simulator and the daemon as real processes, real containers.

Everything a scenario starts is stopped and removed at the end, whatever happened:
the daemon (SIGTERM, then SIGKILL), the simulator, and every container/network/volume
labelled with the scenario's own instance id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.openapi_check import check_response

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE = "runner-orchestrator/test-runner:latest"
LOG_DIR = Path(os.environ.get("RO_TEST_LOG_DIR", "/tmp/runner-orchestrator-test-logs"))  # noqa: S108
SIM_TOKEN = "glpat-testtoken0123456789"
GH_TOKEN = "ghp_testtoken0123456789abcdef"
MANAGED = "io.runner-orchestrator.managed=true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    check: Callable[[str, str, int, Any, bytes], None] | None = None,
) -> tuple[int, Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(
        url,
        data=data,
        method=method,  # noqa: S310 - loopback only
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
            status, got_headers = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        raw, status, got_headers = exc.read(), exc.code, exc.headers
    if check is not None:  # the daemon's answers are checked against its OpenAPI document
        split = urllib.parse.urlsplit(url)
        path = split.path + (f"?{split.query}" if split.query else "")
        check(method, path, status, got_headers, raw)
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.2,
    describe: Callable[[], Any] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError):
            last = predicate()
            if last:
                return last
        time.sleep(interval)
    detail = describe() if describe is not None else last
    raise AssertionError(f"timed out after {timeout}s waiting for {what} ({detail!r})")


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr}")
    return result.stdout


def containers(instance: str, *, pool: str | None = None, all_: bool = True) -> list[str]:
    args = [
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        f"label=io.runner-orchestrator.instance={instance}",
    ]
    if all_:
        args.append("-a")
    if pool:
        args += ["--filter", f"label=io.runner-orchestrator.pool={pool}"]
    return [line for line in docker(*args).split() if line]


def cleanup_instance(instance: str) -> list[str]:
    """Remove every object of ``instance``; return what had to be removed (leaks)."""
    leaked = []
    flt = f"label=io.runner-orchestrator.instance={instance}"
    ids = docker("ps", "-aq", "--filter", flt, check=False).split()
    if ids:
        leaked += [f"container {i[:12]}" for i in ids]
        docker("rm", "-f", "-v", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", flt, check=False).split()
    if nets:
        leaked += [f"network {n[:12]}" for n in nets]
        docker("network", "rm", *nets, check=False)
    vols = docker("volume", "ls", "-q", "--filter", flt, check=False).split()
    if vols:
        leaked += [f"volume {v}" for v in vols]
        docker("volume", "rm", "-f", *vols, check=False)
    return leaked


class Process:
    """A child process whose output goes to a log file under LOG_DIR (secret-scanned)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}-{int(time.time() * 1000)}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        full_env = {k: v for k, v in os.environ.items()}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class Sim:
    """The forge simulator as a standalone process."""

    def __init__(self, kind: str, token: str) -> None:
        self.kind = kind
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            f"forgesim-{kind}",
            [
                sys.executable,
                "-m",
                "tests.forgesim",
                kind,
                "--port",
                str(self.port),
                "--token",
                token,
            ],
        )
        wait_for(lambda: "listening" in self.process.output(), 20, f"{kind} simulator start")
        if kind == "gitlab":  # the project the scenarios watch exists before any job does
            status, body = http("POST", f"{self.url}/_sim/projects", {"id": 1, "path": "app"})
            assert status in (200, 201), body
        else:  # so does the repository (a 404 at the first poll skips it for minutes)
            status, body = http("POST", f"{self.url}/_sim/repos/acme/app", {})
            assert status in (200, 201), body

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3" if self.kind == "github" else self.url

    def state(self) -> dict[str, Any]:
        status, body = http("GET", f"{self.url}/_sim/state")
        assert status == 200, body
        return dict(body)

    def add_job(self, where: str, tags: list[str], duration: float = 1.0) -> str:
        if self.kind == "gitlab":
            status, body = http(
                "POST",
                f"{self.url}/_sim/projects/{where}/jobs",
                {"tags": tags, "duration": duration},
            )
        else:
            status, body = http(
                "POST",
                f"{self.url}/_sim/repos/{where}/jobs",
                {"labels": tags, "duration": duration},
            )
        assert status in (200, 201), body
        return str(body["id"])

    def faults(self, status: int, seconds: float, retry_after: float | None = None) -> None:
        body: dict[str, Any] = {"status": status, "seconds": seconds}
        if retry_after is not None:
            body["retry_after"] = retry_after
        code, text = http("POST", f"{self.url}/_sim/faults", body)
        assert code == 200, text

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.state()["jobs"])

    def stop(self) -> None:
        self.process.stop(10)


class Daemon:
    """``runner-orchestrator run`` as a subprocess with a YAML config."""

    def __init__(
        self, tmp: Path, instance: str, config: dict[str, Any], env: dict[str, str] | None = None
    ) -> None:
        self.tmp = tmp
        self.instance = instance
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / f"config-{instance}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {
            "INSTANCE_ID": instance,
            "HTTP_PORT": str(self.port),
            "HTTP_HOST": "127.0.0.1",
            "STATE_PATH": str(tmp / f"state-{instance}.db"),
            "CONFIG_FILE": str(self.config_path),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "SHUTDOWN_TIMEOUT": "20",
            **(env or {}),
        }
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        self.process = Process(
            f"daemon-{self.instance}", [sys.executable, "-m", "orchestrator", "run"], self.env
        )
        wait_for(self._healthy, 30, "daemon /health")

    def _healthy(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise AssertionError(f"daemon exited:\n{self.process.output()[-3000:]}")
        status, _ = http("GET", f"{self.url}/health", timeout=2)
        return status == 200

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", f"{self.url}{path}", check=check_response)

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        return dict(body)

    def stop(self) -> int:
        assert self.process is not None
        return self.process.stop(60)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill9()


def all_done(sim: Sim, ids: list[str]) -> bool:
    """Have all these simulated jobs finished successfully?"""
    done = {"success", "completed"}
    states = {str(j["id"]): j["status"] for j in sim.jobs()}
    return all(states.get(i) in done for i in ids)


def forge_runners(sim: Sim) -> list[dict[str, Any]]:
    """The registrations the simulator holds now."""
    return list(sim.state()["runners"])


def job_status(sim: Sim, job_id: str) -> str:
    """A simulated job's status as the simulator has it now."""
    return next(str(j["status"]) for j in sim.jobs() if str(j["id"]) == job_id)


def pool(name: str, labels: list[str], **extra: Any) -> dict[str, Any]:
    """A pool on the test runner image, reaching the simulator over host networking."""
    return {
        "name": name,
        "labels": labels,
        "image": TEST_IMAGE,
        "network": "host",
        "memory": "256m",
        "pids_limit": 256,
        **extra,
    }


def gitlab_config(sim: Sim, pools: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "forges": [
            {
                "kind": "gitlab",
                "name": "gitlab",
                "url": sim.url,
                "token": SIM_TOKEN,
                "projects": ["1"],
                "requests_per_minute": 600,
            }
        ],
        "pools": pools,
        "ceiling": {"allow_host_network": True},
        "poll_interval": 2,
        "max_runners": 40,
        **top,
    }


def github_config(sim: Sim, pools: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "forges": [
            {
                "kind": "github",
                "name": "github",
                "token": GH_TOKEN,
                "api_url": sim.api_url,
                "web_url": sim.url,
                "repos": ["acme/app"],
            }
        ],
        "pools": pools,
        "ceiling": {"allow_host_network": True},
        "poll_interval": 2,
        "max_runners": 40,
        **top,
    }


@contextlib.contextmanager
def no_leaks(instance: str) -> Iterator[None]:
    """Fail if the scenario left objects of ``instance`` behind (and remove them)."""
    try:
        yield
    finally:
        leaked = cleanup_instance(instance)
    assert not leaked, f"left behind: {leaked}"
