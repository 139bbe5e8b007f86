"""The engine's event stream, one reader thread per host.

Split from :mod:`orchestrator.runtime.docker_engine` because this is the only code that
runs on a thread of its own for the daemon's life rather than one call at a time. Events
are read by :func:`read_events` (for a container host through :func:`watch`, for a swarm
manager through :func:`orchestrator.runtime.swarm_engine.watch`) and handed to the loop
with ``call_soon_threadsafe``; a broken stream is reopened with backoff from the last
event's time, so a short outage loses nothing (a replayed event may repeat, which a
level-triggered reconciler shrugs off). Only the engine's and the transport's errors
(:data:`STREAM_ERRORS`) count as a broken stream: anything else is a bug, logged loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import docker.errors
import structlog
import urllib3.exceptions

from orchestrator.runtime import LABEL_RUNNER_ID, ContainerEvent, EventCallback

if TYPE_CHECKING:  # docker_hosts starts the watcher threads: import only for the type
    from orchestrator.runtime.docker_hosts import Engine, Host

#: Engine event actions forwarded to the daemon (everything else is noise for it).
EVENT_ACTIONS = ("start", "die", "oom", "destroy")
#: Event stream reconnect backoff: first wait, cap.
EVENTS_BACKOFF_S = (0.5, 30.0)
#: What reading an event stream raises when the engine or the connection fails (read in
#: docker 7.1 and urllib3 2.x): the SDK's errors (an error answer is an ``APIError``),
#: ``OSError`` (the socket's, and ``requests``' own, which are OSErrors), urllib3's that
#: escape the SDK's read loop (``SSLError``, ``ReadTimeoutError``; its ``ProtocolError``
#: and an ``OSError`` mid-stream just end the stream), and ``StreamParseError`` (a
#: ``RuntimeError``) for an event cut off when the stream ends. Only these are retried.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    docker.errors.StreamParseError,
    OSError,
    urllib3.exceptions.HTTPError,
)

log = structlog.get_logger("orchestrator.runtime.events")


def to_event(host: str, raw: Mapping[str, Any]) -> ContainerEvent | None:
    """An engine event -> :class:`ContainerEvent`, or None for an action we ignore."""
    action = str(raw.get("Action") or raw.get("status") or "")
    if action not in EVENT_ACTIONS:
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    exit_code: int | None = None
    if "exitCode" in attributes:
        with contextlib.suppress(TypeError, ValueError):
            exit_code = int(attributes["exitCode"])
    return ContainerEvent(
        host=host,
        container_id=str(actor.get("ID") or raw.get("id") or ""),
        action=action,
        runner_id=str(attributes.get(LABEL_RUNNER_ID, "")),
        exit_code=exit_code,
    )


def read_events(
    target: Engine,
    client: Any,
    stop: threading.Event,
    loop: asyncio.AbstractEventLoop,
    on_event: EventCallback,
    filters: Mapping[str, Any],
    convert: Callable[[Mapping[str, Any]], ContainerEvent | None],
) -> None:
    """Thread body: read ``target``'s event stream until ``stop``; hand each event
    ``convert`` keeps to the loop. A stream that breaks (:data:`STREAM_ERRORS`) is
    reopened after a backoff, from the last event's time.

    Anything else is a bug of ours: it is logged with its traceback and ends the thread
    (the daemon goes on without events from this endpoint: the reconcile loop still sees
    every container, only later; a reconnect of the endpoint starts a new reader). After
    ``stop`` an error is the doing of the close that set it (the stream is shut from
    another thread) and the reader just ends.
    """
    since = int(time.time())
    backoff = EVENTS_BACKOFF_S[0]
    while not stop.is_set():
        try:
            stream = client.events(decode=True, filters=dict(filters), since=since)
            target.stream = stream
            target.watching.set()
            if stop.is_set():
                stream.close()
                return
            for raw in stream:
                backoff = EVENTS_BACKOFF_S[0]
                since = max(since, int(raw.get("time", since)))
                event = convert(raw)
                if event is not None:
                    try:
                        loop.call_soon_threadsafe(on_event, event)
                    except RuntimeError:  # loop closed under us: nothing to tell
                        return
        except STREAM_ERRORS as exc:  # the engine or the connection: reopen after backoff
            target.watching.set()
            log.debug("events.stream_broken", host=target.name, error=repr(exc), retry_s=backoff)
        except BaseException:
            target.watching.set()
            if stop.is_set():
                return
            log.exception("events.reader_crashed", host=target.name)
            raise
        if stop.wait(backoff):
            return
        backoff = min(backoff * 2, EVENTS_BACKOFF_S[1])


def watch(
    host: Host,
    client: Any,
    stop: threading.Event,
    loop: asyncio.AbstractEventLoop,
    on_event: EventCallback,
    label_filter: list[str],
) -> None:
    """Thread body: read a container host's event stream (see :func:`read_events`)."""
    filters = {"type": "container", "label": label_filter, "event": list(EVENT_ACTIONS)}
    read_events(host, client, stop, loop, on_event, filters, functools.partial(to_event, host.name))
