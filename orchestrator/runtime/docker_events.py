"""The engine's event stream, one reader thread per host.

Split from :mod:`orchestrator.runtime.docker_engine` because this is the only code that
runs on a thread of its own for the daemon's life rather than one call at a time. Events
are read by :func:`watch` and handed to the loop with ``call_soon_threadsafe``; a broken
stream is reopened with backoff from the last event's time, so a short outage loses
nothing (a replayed event may repeat, which a level-triggered reconciler shrugs off).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from orchestrator.runtime import LABEL_RUNNER_ID, ContainerEvent, EventCallback

if TYPE_CHECKING:  # docker_hosts starts the watcher threads: import only for the type
    from orchestrator.runtime.docker_hosts import Host

#: Engine event actions forwarded to the daemon (everything else is noise for it).
EVENT_ACTIONS = ("start", "die", "oom", "destroy")
#: Event stream reconnect backoff: first wait, cap.
EVENTS_BACKOFF_S = (0.5, 30.0)


def to_event(host: str, raw: dict[str, Any]) -> ContainerEvent | None:
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


def watch(
    host: Host,
    client: Any,
    stop: threading.Event,
    loop: asyncio.AbstractEventLoop,
    on_event: EventCallback,
    label_filter: list[str],
) -> None:
    """Thread body: read the host's event stream until ``stop``; reopen on errors."""
    since = int(time.time())
    backoff = EVENTS_BACKOFF_S[0]
    filters = {"type": "container", "label": label_filter, "event": list(EVENT_ACTIONS)}
    while not stop.is_set():
        try:
            stream = client.events(decode=True, filters=filters, since=since)
            host.stream = stream
            host.watching.set()
            if stop.is_set():
                stream.close()
                return
            for raw in stream:
                backoff = EVENTS_BACKOFF_S[0]
                since = max(since, int(raw.get("time", since)))
                event = to_event(host.name, raw)
                if event is not None:
                    try:
                        loop.call_soon_threadsafe(on_event, event)
                    except RuntimeError:  # loop closed under us: nothing to tell
                        return
        except Exception:  # noqa: BLE001 - a broken stream of any kind: reopen after backoff
            host.watching.set()
        if stop.wait(backoff):
            return
        backoff = min(backoff * 2, EVENTS_BACKOFF_S[1])
