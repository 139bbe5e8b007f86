"""The instance's shared engine objects: its bridge network and its named volumes.

Split from :mod:`orchestrator.runtime.docker_engine` because these outlive any one
runner: the network is made once per host before the first create, and both are removed
only by an explicit clean-up (drain, shutdown), and then only when they carry this
instance's labels and nothing uses them. Named volumes are caches meant to outlive
runners. Every function blocks and runs in the runtime's worker threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import docker.errors


def default_network_name(instance_id: str) -> str:
    """The per-instance bridge network runners join unless a spec names another."""
    return f"runner-orchestrator-{instance_id}"


def ensure_network(client: Any, name: str, labels: Mapping[str, str]) -> None:
    """Create the instance bridge network with our labels if it is missing.

    ICC is off: runners of different jobs share the network but cannot reach each
    other, only the outside world. An existing network of that name is used as is (an
    operator may have made it); only one carrying our instance label is ever removed.
    """
    # the engine's name filter matches substrings: compare exactly
    if any(n.name == name for n in client.networks.list(names=[name])):
        return
    try:
        client.networks.create(
            name,
            driver="bridge",
            labels=dict(labels),
            options={"com.docker.network.bridge.enable_icc": "false"},
            check_duplicate=True,
        )
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: created concurrently by another call, fine
            raise


def remove_network(client: Any, name: str, label_filter: list[str]) -> bool:
    """Remove the network ``name`` if it carries our labels and no container is attached.
    Returns whether it was removed."""
    removed = False
    for net in client.networks.list(filters={"label": label_filter}, names=[name]):
        net.reload()
        if net.name != name or net.attrs.get("Containers"):
            continue
        with contextlib.suppress(docker.errors.NotFound):
            net.remove()
            removed = True
    return removed


def remove_volumes(client: Any, label_filter: list[str]) -> int:
    """Remove our labelled volumes that no container uses; returns how many."""
    count = 0
    for volume in client.volumes.list(filters={"label": label_filter}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            volume.remove()
            count += 1
    return count
