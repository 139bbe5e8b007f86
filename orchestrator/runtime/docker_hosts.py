"""One Docker endpoint's connection and health, and how an SDK failure reads.

Split from :mod:`orchestrator.runtime.docker_engine` because these rules belong to an
endpoint, not to any one operation: how a client is built (TLS, ssh, timeouts, pool
size), what "the endpoint did not answer" means as opposed to "the engine said no", and
which runtime error each SDK failure becomes. Every operation of the runtime ends in
:func:`translate`, so the boundary between a down host and a refused request is drawn
once, here.

* **One ``DockerClient`` per host for the daemon's life**, its connection pool sized for
  every concurrent call plus the event stream and a ping, so no call opens and drops a
  connection of its own.
* **Hosts fail independently.** A host that does not answer is marked down
  (:func:`mark_down`), left out of placement and retried later by the runtime, while the
  others keep working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any

import docker
import docker.errors
import docker.tls
import requests.exceptions

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_PREFIX,
    ContainerStartError,
    HostStatus,
    HostUnavailable,
    RuntimeFailure,
)

#: Which configured host name created a container. Informational for operators, and lets
#: ``list()`` attribute a container correctly when one engine is configured under two names.
LABEL_HOST = f"{LABEL_PREFIX}.host"

#: Per-request HTTP timeout towards an engine. ``stop`` adds its own grace period.
API_TIMEOUT_S = 60
#: Timeout of a connection attempt (version probe, ping): a blackholed tcp endpoint must not
#: hold a worker thread for API_TIMEOUT_S on every retry.
CONNECT_TIMEOUT_S = 10
#: Exceptions that mean "the endpoint did not answer", not "the engine said no".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)
#: What the docker SDK and its transport raise (requests' errors are OSErrors). Only these
#: are translated into runtime errors; anything else is a bug of ours and propagates.
SDK_ERRORS: tuple[type[BaseException], ...] = (docker.errors.DockerException, OSError)


@dataclasses.dataclass
class Host:
    """Mutable state of one endpoint. Mutated on the event loop thread only; the watcher
    thread touches just ``stop``/``stream``."""

    config: DockerHostConfig
    client: Any = None
    ok: bool = False
    error: str = "not connected yet"
    last_attempt: float = float("-inf")
    containers: set[str] = dataclasses.field(default_factory=set)
    network_ready: bool = False
    watcher: threading.Thread | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    stream: Any = None
    watching: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.config.name


def status(host: Host) -> HostStatus:
    """In-memory view of one host (no I/O).

    ``containers`` counts this instance's containers on the host, exited ones included
    until removed (they still hold disk and a name); it is refreshed by ``list()`` and
    kept current by ``create``/``remove`` in between. Containers of other instances or
    tools on the same engine are not counted: ``max_containers`` is this daemon's share.
    """
    return HostStatus(
        name=host.name,
        url=host.config.url,
        ok=host.ok,
        arch=host.config.arch,
        gpus=host.config.gpus,
        max_containers=host.config.max_containers,
        containers=len(host.containers),
        error=host.error,
    )


def make_client(config: DockerHostConfig, max_pool_size: int) -> Any:
    """Build and ping a client (blocking; runs in a thread).

    TLS only when certificates are configured; ``ssh://`` shells out to the ``ssh``
    binary (``use_ssh_client``) so the operator's ssh config and agent apply and no
    paramiko is needed.
    """
    tls: Any = False
    if config.tls_ca or config.tls_cert or config.tls_key:
        cert = (
            (str(config.tls_cert), str(config.tls_key))
            if config.tls_cert and config.tls_key
            else None
        )
        tls = docker.tls.TLSConfig(
            client_cert=cert,
            ca_cert=str(config.tls_ca) if config.tls_ca else None,
            verify=config.tls_verify,
        )
    # The constructor already probes the engine's API version: short timeout for that.
    client = docker.DockerClient(
        base_url=config.url,
        tls=tls,
        timeout=CONNECT_TIMEOUT_S,
        use_ssh_client=config.url.startswith("ssh://"),
        # every concurrent call, the event stream and a ping keep a pooled connection
        max_pool_size=max_pool_size,
    )
    try:
        ping(client)
    except BaseException:
        client.close()
        raise
    # Per-request timeouts win over the one the transport was built with (checked:
    # a 8 s stop succeeds on a client built with 3 s), so raise it for real work.
    client.api.timeout = API_TIMEOUT_S
    return client


def close(host: Host) -> None:
    """Close the host's client (its watcher already stopped); the host reads as closed."""
    if host.client is not None:
        with contextlib.suppress(Exception):
            host.client.close()
        host.client = None
    host.ok = False
    host.error = "closed"
    host.network_ready = False


def ping(client: Any) -> None:
    """``GET /_ping`` with the short connect timeout (the SDK's ``ping()`` uses the long
    per-request one)."""
    response = client.api.get(f"{client.api.base_url}/_ping", timeout=CONNECT_TIMEOUT_S)
    response.raise_for_status()


def describe(exc: BaseException) -> str:
    """One line for logs and ``/status``: the engine's explanation when it gave one."""
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation
        if isinstance(explanation, bytes):
            explanation = explanation.decode("utf-8", errors="replace")
        return f"{exc.status_code}: {explanation or exc}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def mark_down(host: Host, exc: BaseException) -> None:
    host.ok = False
    host.error = describe(exc)


def translate(
    host: Host, exc: BaseException, op: str, what: str, container_id: str = ""
) -> RuntimeFailure:
    """SDK error (one of :data:`SDK_ERRORS`; callers catch only those) -> runtime error.
    Connection trouble also marks the host down; the engine refusing a create or start
    is a :class:`ContainerStartError`; anything else (a stop or remove the engine
    refused) a plain :class:`RuntimeFailure`."""
    if isinstance(exc, CONNECTION_ERRORS) or (
        isinstance(exc, docker.errors.DockerException)
        and not isinstance(exc, docker.errors.APIError)
        and "connection" in str(exc).lower()
    ):
        mark_down(host, exc)
        return HostUnavailable(host.name, f"{op} {what}: {describe(exc)}")
    if isinstance(exc, docker.errors.ImageNotFound):
        return ContainerStartError(
            f"{op} {what} on {host.name}: image not found locally ({describe(exc)})",
            host=host.name,
            container_id=container_id,
        )
    message = f"{op} {what} on {host.name} failed: {describe(exc)}"
    if op in {"create", "start"}:
        return ContainerStartError(message, host=host.name, container_id=container_id)
    return RuntimeFailure(message)
