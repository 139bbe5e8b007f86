"""One runner's Swarm service, engine side: create, read, scale to zero, remove, logs.

Split from :mod:`orchestrator.runtime.swarm` (the async driver) and
:mod:`orchestrator.runtime.swarm_engine` (the endpoint: connection, events, shared
objects) because these calls act on a single runner and share its rules: the credential
secret is made before the service and removed with it (or right away when the service
could not be made), and a service is scaled or removed only after its labels say it is
this instance's. Every call here blocks and runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any, cast

import docker.errors

from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_RUNNER_ID,
    ContainerInfo,
    ContainerSpec,
    RuntimeFailure,
)
from orchestrator.runtime.swarm_engine import (
    Endpoint,
    ensure_network,
    sweep_secrets,
    version_at_least,
)
from orchestrator.runtime.swarm_spec import (
    TERMINAL_STATES,
    latest_task,
    node_status,
    runner_labels,
    service_info,
    service_spec,
)


def create_service(
    ep: Endpoint, spec: ContainerSpec, *, instance_id: str, network_name: str
) -> dict[str, Any]:
    """The credential secret (file and stdin delivery), then the service; its inspect data.
    ``network_name`` is the instance overlay, made here on first use."""
    client = ep.client
    network = spec.network or network_name
    if spec.network is None and not ep.network_ready:
        ensure_network(client, network_name, instance_id)
        ep.network_ready = True
    secret: tuple[str, str] | None = None
    # "stdin" means the file secret here: a service's task cannot be attached to before
    # it starts, and a secret keeps the credential out of inspect just the same
    if spec.credential_delivery != "env":
        name = f"{spec.name}-credential-{secrets.token_hex(3)}"
        created = client.api.create_secret(
            name,
            spec.credential.encode(),
            labels=runner_labels(instance_id, spec, ep.name),
        )
        secret = (str(created["ID"]), name)
    body = service_spec(
        spec,
        instance_id=instance_id,
        host=ep.name,
        network=network,
        secret=secret,
        extra_constraints=spec.constraints,
        no_new_privileges=version_at_least(ep.api_version, "1.44"),
    )
    try:
        created_service = client.api.create_service(
            task_template=body["TaskTemplate"],
            name=body["Name"],
            labels=body["Labels"],
            mode=body["Mode"],
        )
    except BaseException:
        if secret is not None:
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_secret(secret[0])
        raise
    return cast(dict[str, Any], client.api.inspect_service(created_service["ID"]))


def list_services(ep: Endpoint, label_filter: list[str]) -> list[ContainerInfo]:
    """Our runner services with their newest tasks; refreshes the node view and sweeps
    secrets of ours no service uses any more."""
    client = ep.client
    ep.nodes = tuple(node_status(n) for n in client.api.nodes())
    services = client.api.services(filters={"label": label_filter})
    ids = [s["ID"] for s in services]
    by_service: dict[str, list[Any]] = {i: [] for i in ids}
    if ids:
        for task in client.api.tasks(filters={"service": ids}):
            by_service.setdefault(task.get("ServiceID", ""), []).append(task)
    sweep_secrets(client, label_filter, services)
    return [service_info(ep.name, s, latest_task(by_service.get(s["ID"], []))) for s in services]


def service_logs(ep: Endpoint, service_id: str, tail: int) -> str:
    """The service's last ``tail`` lines, a failed task's engine error appended; '' when
    gone."""
    try:
        chunks = ep.client.api.service_logs(service_id, stdout=True, stderr=True, tail=max(0, tail))
        text = b"".join(chunks).decode("utf-8", errors="replace")
        state = service_state(ep.client, service_id)
    except docker.errors.NotFound:
        return ""
    if state is not None:
        info = service_info(ep.name, state[0], state[1])
        if info.error:
            text += f"[swarm] task {info.status}: {info.error}\n"
    return text


def service_state(client: Any, service_id: str) -> tuple[dict[str, Any], Any] | None:
    """Service and its newest task; None when the service is gone."""
    try:
        service = client.api.inspect_service(service_id)
        tasks = client.api.tasks(filters={"service": service_id})
    except docker.errors.NotFound:
        return None
    return cast(dict[str, Any], service), latest_task(tasks)


def owned_service(client: Any, service_id: str, instance_id: str) -> dict[str, Any] | None:
    """The service if ours; None if gone; RuntimeFailure if another instance's."""
    try:
        attrs = cast(dict[str, Any], client.api.inspect_service(service_id))
    except docker.errors.NotFound:
        return None
    labels = (attrs.get("Spec") or {}).get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_INSTANCE) != instance_id:
        raise RuntimeFailure(f"service {service_id[:12]} is not managed by instance {instance_id}")
    return attrs


def scale_to_zero(client: Any, service_id: str, instance_id: str, timeout_s: float) -> None:
    """Scale a runner's service to zero replicas and wait (clamped) for its task to end."""
    attrs = owned_service(client, service_id, instance_id)
    if attrs is None:
        return
    replicas = ((attrs["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas")
    if replicas != 0:
        try:
            client.api.update_service(
                service_id,
                attrs["Version"]["Index"],
                mode={"Replicated": {"Replicas": 0}},
                fetch_current_spec=True,
            )
        except docker.errors.NotFound:  # removed between inspect and update
            return
    deadline = time.monotonic() + max(1.0, timeout_s) + 5.0
    while time.monotonic() < deadline:
        task = latest_task(client.api.tasks(filters={"service": service_id}))
        if task is None or (task.get("Status") or {}).get("State") in TERMINAL_STATES:
            return
        time.sleep(0.2)


def remove_runner(client: Any, service_id: str, instance_id: str) -> None:
    """Remove a runner's service and its credential secret; gone already is success."""
    attrs = owned_service(client, service_id, instance_id)
    if attrs is None:
        return
    runner_id = ((attrs.get("Spec") or {}).get("Labels") or {}).get(LABEL_RUNNER_ID, "")
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_service(service_id)
    if runner_id:
        for secret in client.api.secrets(
            filters={
                "label": [
                    f"{LABEL_MANAGED}=true",
                    f"{LABEL_INSTANCE}={instance_id}",
                    f"{LABEL_RUNNER_ID}={runner_id}",
                ]
            }
        ):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_secret(secret["ID"])
