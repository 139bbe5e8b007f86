"""Engine side of the Swarm runtime, per endpoint: connecting to a manager, reading its
events, and the instance's shared objects (overlay network, secrets, volumes) and their
clean-up. :mod:`orchestrator.runtime.swarm` drives these from the event loop (every call
here blocks and runs in a worker thread there); what a runner's service looks like is
:mod:`orchestrator.runtime.swarm_spec`, and the calls on one runner's service are in
:mod:`orchestrator.runtime.swarm_services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import docker
import docker.errors

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_RUNNER_ID,
    ContainerEvent,
    EventCallback,
    NodeStatus,
    RuntimeFailure,
    labels_for,
    parse_time,
)
from orchestrator.runtime.docker_events import read_events

# A manager answers like a container host: the same reconnect pace, the same line for an
# error, the same errors for "the endpoint did not answer" (swarm.py imports them here).
from orchestrator.runtime.docker_hosts import CONNECTION_ERRORS as CONNECTION_ERRORS  # noqa: PLC0414 - re-export
from orchestrator.runtime.docker_hosts import HOST_RETRY_S as HOST_RETRY_S  # noqa: PLC0414 - re-export
from orchestrator.runtime.docker_hosts import Engine, make_client
from orchestrator.runtime.docker_hosts import describe as describe  # noqa: PLC0414 - re-export

#: the docker SDK's default connection pool size, which this runtime always used
_POOL_SIZE = 10
#: A secret of ours that no service uses is removed once it is this old (younger ones may
#: belong to a ``create`` in flight).
SECRET_GRACE_S = 120.0
#: How long ``release_unused`` retries removing the overlay network while the last tasks'
#: containers are still being torn down.
NETWORK_RELEASE_S = 20.0


class NotSwarmManager(RuntimeFailure):
    """The endpoint answers but is not a manager of an active swarm."""


@dataclasses.dataclass
class Endpoint(Engine):
    """A swarm manager: an :class:`Engine`, its API version, our services and its nodes."""

    api_version: str = ""
    services: set[str] = dataclasses.field(default_factory=set)
    nodes: tuple[NodeStatus, ...] = ()


def connect(config: DockerHostConfig) -> Any:
    """Client for one endpoint, checked to be a swarm manager (blocking). The client itself
    (TLS, ssh, timeouts, ping) is built as for a container host."""
    client = make_client(config, max_pool_size=_POOL_SIZE)
    try:
        check_manager(client)
    except BaseException:
        client.close()
        raise
    return client


def check_manager(client: Any) -> None:
    swarm = client.api.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState", "inactive")
    if state != "active" or not swarm.get("ControlAvailable"):
        raise NotSwarmManager(
            f"engine is not a swarm manager (swarm {state}; run `docker swarm init` "
            "or point the endpoint at a manager)"
        )


def version_at_least(version: str, minimum: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        out = []
        for piece in text.split("."):
            try:
                out.append(int(piece))
            except ValueError:
                break
        return tuple(out)

    return bool(version) and parts(version) >= parts(minimum)


# --- events ---------------------------------------------------------------------------------


def to_event(
    instance_id: str, host: str, raw: Mapping[str, Any], services: frozenset[str]
) -> ContainerEvent | None:
    """Our task containers' start/die/oom/destroy and our services' removal, keyed by
    service id (the runner's ``container_id``); everything else is noise."""
    kind = raw.get("Type")
    action = str(raw.get("Action") or "")
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    if kind == "container":
        if attributes.get(LABEL_INSTANCE) != instance_id:
            return None
        if action not in {"start", "die", "oom", "destroy"}:
            return None
        exit_code: int | None = None
        with contextlib.suppress(TypeError, ValueError, KeyError):
            exit_code = int(attributes["exitCode"])
        return ContainerEvent(
            host=host,
            container_id=str(attributes.get("com.docker.swarm.service.id", "")),
            action=action,
            runner_id=str(attributes.get(LABEL_RUNNER_ID, "")),
            exit_code=exit_code,
        )
    if kind == "service" and action == "remove" and actor.get("ID") in services:
        return ContainerEvent(host=host, container_id=str(actor["ID"]), action="destroy")
    return None


def watch(
    ep: Endpoint,
    instance_id: str,
    client: Any,
    stop: threading.Event,
    loop: asyncio.AbstractEventLoop,
    on_event: EventCallback,
) -> None:
    """Thread: read container and service events until ``stop`` (see
    :func:`orchestrator.runtime.docker_events.read_events`)."""

    def convert(raw: Mapping[str, Any]) -> ContainerEvent | None:
        return to_event(instance_id, ep.name, raw, frozenset(ep.services))

    read_events(ep, client, stop, loop, on_event, {"type": ["container", "service"]}, convert)


# --- the instance's shared objects: network, secrets, volumes ------------------------------


def ensure_network(client: Any, name: str, instance_id: str) -> None:
    """The instance's overlay network, labelled, if missing (an existing one of that name
    is used as is). Swarm overlays have no ICC switch: runners on it can reach each
    other, which docs/deployment.md states."""
    if any(n["Name"] == name for n in client.api.networks(names=[name])):
        return
    try:
        client.api.create_network(
            name,
            driver="overlay",
            scope="swarm",
            labels=labels_for(instance_id),
            attachable=False,
            check_duplicate=True,
        )
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise


def sweep_secrets(
    client: Any, label_filter: list[str], services: Sequence[Mapping[str, Any]]
) -> int:
    """Remove our secrets that no service of ours refers to and that are older than
    :data:`SECRET_GRACE_S` (a crash between ``create_secret`` and ``create_service``)."""
    used = {
        ref.get("SecretID")
        for s in services
        for ref in (
            ((s.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        ).get("Secrets")
        or []
    }
    now = time.time()
    removed = 0
    for secret in client.api.secrets(filters={"label": label_filter}):
        created = parse_time(secret.get("CreatedAt"))
        if secret["ID"] in used or created is None:
            continue
        if now - created.timestamp() < SECRET_GRACE_S:
            continue
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_secret(secret["ID"])
            removed += 1
    return removed


def release(client: Any, label_filter: list[str]) -> None:
    """Remove this instance's secrets, overlay network and named volumes when no runner
    service of it is left; the network is retried (clamped to :data:`NETWORK_RELEASE_S`)
    while the last removed services' containers are still being torn down."""
    services = client.api.services(filters={"label": label_filter})
    if services:
        return
    for secret in client.api.secrets(filters={"label": label_filter}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_secret(secret["ID"])
    deadline = time.monotonic() + NETWORK_RELEASE_S
    delay = 0.2
    for net in client.api.networks(filters={"label": label_filter}):
        while True:
            try:
                client.api.remove_network(net["Id"])
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
    for volume in (client.api.volumes(filters={"label": label_filter}) or {}).get("Volumes") or []:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_volume(volume["Name"])
