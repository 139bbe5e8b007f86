"""Existing containers on one engine: reading them, and acting on them only if ours.

Split from :mod:`orchestrator.runtime.docker_engine` because this is where the ownership
rule lives. **Labels are the only ownership record**: listing filters on
``io.runner-orchestrator.managed=true`` *and* this daemon's instance id, and ``stop`` /
``remove`` re-read a container's labels first and refuse (:class:`NotOurs`) one that
carries another instance's id. The same engine data becomes :class:`ContainerInfo` here
(its labels read by :func:`orchestrator.runtime.container_info`, as the swarm runtime
reads a service's) for create, start and list alike, which is what adoption after a
restart reads.

Every function but :func:`info` and :func:`dedupe` blocks and runs in the runtime's
worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import docker.errors

from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    ContainerInfo,
    RuntimeFailure,
    container_info,
    parse_time,
)


class NotOurs(RuntimeFailure):
    """A container id that exists but belongs to another daemon instance (or to nobody):
    this runtime never stops or removes it."""


def info(host: str, attrs: dict[str, Any]) -> ContainerInfo:
    """Inspect data -> :class:`ContainerInfo` (an exit code only once it has exited)."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    state = attrs.get("State") or {}
    status = str(state.get("Status") or "created")
    exit_code: int | None = None
    if status in {"exited", "dead"} and state.get("ExitCode") is not None:
        exit_code = int(state["ExitCode"])
    return container_info(
        labels,
        container_id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        host=host,
        status=status,
        exit_code=exit_code,
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
    )


def dedupe(found: Sequence[tuple[ContainerInfo, str]]) -> tuple[ContainerInfo, ...]:
    """One entry per container id. The same id seen through two host names means one
    engine configured twice; the host its ``.host`` label names wins, else the first."""
    chosen: dict[str, ContainerInfo] = {}
    for container, created_on in found:
        if container.id not in chosen or container.host == created_on:
            chosen[container.id] = container
    return tuple(chosen.values())


def list_sync(client: Any, label_filter: list[str]) -> list[dict[str, Any]]:
    """Our containers on one engine, with full inspect data (exit code, times)."""
    summaries = client.api.containers(all=True, filters={"label": label_filter})
    result = []
    for summary in summaries:
        if "com.docker.swarm.service.id" in (summary.get("Labels") or {}):
            continue  # a Swarm task: the Swarm runtime's, listed as its service
        try:
            result.append(cast(dict[str, Any], client.api.inspect_container(summary["Id"])))
        except docker.errors.NotFound:  # removed between list and inspect
            continue
    return result


def check_ours(client: Any, container_id: str, instance_id: str) -> bool:
    """True if ours; False if gone; :class:`NotOurs` if someone else's."""
    try:
        attrs = client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_INSTANCE) != instance_id:
        raise NotOurs(f"container {container_id[:12]} is not managed by instance {instance_id}")
    return True


def stop_sync(client: Any, container_id: str, instance_id: str, timeout_s: float) -> None:
    """SIGTERM, SIGKILL after ``timeout_s``, if ours. Gone already is success."""
    if not check_ours(client, container_id, instance_id):
        return
    try:
        client.api.stop(container_id, timeout=max(0, round(timeout_s)))
    except docker.errors.NotFound:
        return


def remove_sync(client: Any, container_id: str, instance_id: str) -> None:
    """Force-remove with anonymous volumes, if ours. Gone already (or being removed) is
    success."""
    if not check_ours(client, container_id, instance_id):
        return
    try:
        client.api.remove_container(container_id, v=True, force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code == 409 and "already in progress" in str(exc):
            return
        raise


def logs_sync(client: Any, container_id: str, tail: int) -> bytes:
    """The last ``tail`` lines, stdout and stderr interleaved; empty if gone."""
    try:
        return cast(
            bytes,
            client.api.logs(container_id, stdout=True, stderr=True, tail=max(0, tail)),
        )
    except docker.errors.NotFound:
        return b""
