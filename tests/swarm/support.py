"""A real single-node swarm for the tests, shared safely with everyone on the engine.

The engine may already be in a swarm (an operator's, or another test session's): then
it is used as it is and never left. Otherwise the first user runs ``docker swarm init
--advertise-addr 127.0.0.1`` and the last user of *this* machine's test sessions runs
``docker swarm leave --force``. A small reference count under a file lock makes two
concurrent pytest sessions (runtime tests and e2e, say) agree on who leaves; a session
that dies without releasing leaves the swarm in place (never the other way round).
Plain containers of other test sessions are not disturbed by swarm mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

STATE = Path("/tmp/runner-orchestrator-swarm-fixture.json")  # noqa: S108
LOCK = Path("/tmp/runner-orchestrator-swarm-fixture.lock")  # noqa: S108
LABEL_INSTANCE = "io.runner-orchestrator.instance"


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    with LOCK.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            state = json.loads(STATE.read_text()) if STATE.exists() else {}
        except json.JSONDecodeError:
            state = {}
        state.setdefault("users", 0)
        state.setdefault("initialised", False)
        yield state
        STATE.write_text(json.dumps(state))


def swarm_state(client: Any) -> tuple[str, bool]:
    swarm = client.info().get("Swarm") or {}
    return str(swarm.get("LocalNodeState", "inactive")), bool(swarm.get("ControlAvailable"))


def acquire(client: Any) -> str:
    """Make sure the engine is a swarm manager; '' when usable, else why not."""
    with _locked() as state:
        local, manager = swarm_state(client)
        if local == "inactive":
            state["had_gwbridge"] = bool(client.networks(names=["docker_gwbridge"]))
            result = subprocess.run(
                ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode != 0:
                return f"docker swarm init failed: {result.stderr.strip()}"
            state["initialised"] = True
        elif local != "active" or not manager:
            return f"engine is in swarm state {local!r} and not a manager"
        state["users"] += 1
    return ""


def release() -> None:
    """Leave the swarm if the tests initialised it and nobody else uses it any more."""
    with _locked() as state:
        state["users"] = max(0, state["users"] - 1)
        if state["users"] == 0 and state["initialised"]:
            subprocess.run(
                ["docker", "swarm", "leave", "--force"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if not state.get("had_gwbridge", True):  # swarm init made it; leave does not remove it
                subprocess.run(
                    ["docker", "network", "rm", "docker_gwbridge"],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            state["initialised"] = False


def settle(client: Any, prefix: str, timeout: float = 30.0) -> None:
    """Wait (clamped) while the engine still tears down task containers of removed
    services: removal is asynchronous, and a container on its way out is not a leak."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [
            c
            for c in client.api.containers(
                all=True, filters={"label": ["io.runner-orchestrator.managed"]}
            )
            if str((c.get("Labels") or {}).get(LABEL_INSTANCE, "")).startswith(prefix)
        ]
        if not busy:
            return
        time.sleep(0.5)


def leftovers(client: Any, prefix: str) -> list[str]:
    """Every object labelled with an instance id starting with ``prefix``, removed; the
    names are returned so the caller can fail on a leak."""
    settle(client, prefix)
    found: list[str] = []
    flt = {"label": ["io.runner-orchestrator.managed"]}

    def ours(labels: dict[str, str] | None) -> bool:
        return str((labels or {}).get(LABEL_INSTANCE, "")).startswith(prefix)

    for service in client.api.services(filters=flt):
        if ours(service["Spec"].get("Labels")):
            found.append(f"service {service['Spec']['Name']}")
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_service(service["ID"])
    for secret in client.api.secrets(filters=flt):
        if ours(secret["Spec"].get("Labels")):
            found.append(f"secret {secret['Spec']['Name']}")
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_secret(secret["ID"])
    for container in client.api.containers(all=True, filters=flt):
        if ours(container.get("Labels")):
            found.append(f"container {container['Id'][:12]}")
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_container(container["Id"], force=True, v=True)
    for network in client.api.networks(filters=flt):
        if ours(network.get("Labels")):
            found.append(f"network {network['Name']}")
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_network(network["Id"])
    return found


class Events:
    """Collects the ContainerEvents a runtime hands to its callback."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed: asyncio.Event | None = None

    def __call__(self, event: Any) -> None:
        self.items.append(event)
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, container_id: str, action: str, timeout: float = 20.0) -> Any:
        self._changed = asyncio.Event()

        async def _wait() -> Any:
            assert self._changed is not None
            while True:
                for event in self.items:
                    if event.container_id == container_id and event.action == action:
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_wait(), timeout)
