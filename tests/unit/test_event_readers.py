"""The event-stream reader threads (container hosts and swarm managers), without an engine.

Both readers share :func:`orchestrator.runtime.docker_events.read_events`; each test runs
it over both entry points. A broken stream (the engine's or the transport's error) is
reopened after a doubling backoff that an event resets; any other exception is a bug: it
is logged with its traceback and propagates instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import pytest
import requests.exceptions
import structlog.testing
import urllib3.exceptions

from orchestrator.config import DockerHostConfig
from orchestrator.runtime import (
    LABEL_INSTANCE,
    LABEL_RUNNER_ID,
    ContainerEvent,
    docker_events,
    swarm_engine,
)
from orchestrator.runtime.docker_hosts import Host

INSTANCE = "inst"
#: One container's death as both kinds of engine report it (the swarm reader wants the
#: instance label and keys the event by service id, the container reader by container id).
RAW = {
    "Type": "container",
    "Action": "die",
    "time": 4_000_000_000,  # after now: the reader resumes from it
    "Actor": {
        "ID": "c1",
        "Attributes": {
            LABEL_INSTANCE: INSTANCE,
            LABEL_RUNNER_ID: "r1",
            "exitCode": "3",
            "com.docker.swarm.service.id": "c1",
        },
    },
}


class Stop(threading.Event):
    """``stop`` that records each backoff instead of sleeping through it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        return self.is_set()


class Stream:
    """A ``CancellableStream`` stand-in: yields ``items``, raising any exception among them."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self._items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.closed = True


class Client:
    """``client.events`` answers from a script: an exception is raised, a callable is
    called (it may set ``stop``) and its stream returned, a list becomes a stream."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.opened: list[int] = []

    def events(self, *, decode: bool, filters: dict[str, Any], since: int) -> Stream:
        assert decode
        self.opened.append(since)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step()  # type: ignore[no-any-return]
        return Stream(step)


Reader = Callable[[Client, Stop, asyncio.AbstractEventLoop, list[ContainerEvent]], None]


def docker_reader(
    client: Client, stop: Stop, loop: asyncio.AbstractEventLoop, seen: list[ContainerEvent]
) -> None:
    host = Host(DockerHostConfig(name="h1"))
    docker_events.watch(host, client, stop, loop, seen.append, ["managed=true"])


def swarm_reader(
    client: Client, stop: Stop, loop: asyncio.AbstractEventLoop, seen: list[ContainerEvent]
) -> None:
    ep = swarm_engine.Endpoint(DockerHostConfig(name="h1", mode="swarm"))
    swarm_engine.watch(ep, INSTANCE, client, stop, loop, seen.append)


@pytest.fixture(params=[docker_reader, swarm_reader], ids=["docker", "swarm"])
def reader(request: pytest.FixtureRequest) -> Reader:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run(
    reader: Reader, client: Client, stop: Stop, loop: asyncio.AbstractEventLoop
) -> list[ContainerEvent]:
    """Run the reader in this thread, then let the loop deliver what it handed over."""
    seen: list[ContainerEvent] = []
    try:
        reader(client, stop, loop, seen)
    finally:
        loop.run_until_complete(asyncio.sleep(0))
    return seen


def test_transport_errors_reopen_the_stream_with_backoff(
    reader: Reader, loop: asyncio.AbstractEventLoop
) -> None:
    stop = Stop()

    def last() -> Stream:
        stop.set()  # aclose() while the stream is being reopened
        return Stream([])

    client = Client(
        [
            requests.exceptions.ConnectionError("engine down"),
            docker.errors.APIError("500 Server Error"),
            # an event resets the backoff; then urllib3's SSLError escapes the SDK's read
            [RAW, urllib3.exceptions.SSLError("bad record mac")],
            [docker.errors.StreamParseError(ValueError("cut off"))],
            [OSError("connection reset")],
            last,
        ]
    )
    seen = run(reader, client, stop, loop)
    assert stop.waits == [0.5, 1.0, 0.5, 1.0, 2.0]
    assert [(e.action, e.container_id, e.runner_id, e.exit_code) for e in seen] == [
        ("die", "c1", "r1", 3)
    ]
    # reopened from the last event's time, so an outage loses nothing
    assert client.opened[3:] == [4_000_000_000] * 3


def test_a_bug_is_not_swallowed(reader: Reader, loop: asyncio.AbstractEventLoop) -> None:
    stop = Stop()
    client = Client([[AttributeError("'NoneType' object has no attribute 'get'")], []])
    with structlog.testing.capture_logs() as logs, pytest.raises(AttributeError):
        run(reader, client, stop, loop)
    assert stop.waits == []  # not retried
    assert len(client.script) == 1  # the stream was not reopened
    crashed = [e for e in logs if e["event"] == "events.reader_crashed"]
    assert crashed and crashed[0]["log_level"] == "error" and crashed[0]["exc_info"]


def test_a_bad_event_is_a_bug_too(reader: Reader, loop: asyncio.AbstractEventLoop) -> None:
    stop = Stop()
    client = Client([[{**RAW, "time": "not a number"}]])
    with structlog.testing.capture_logs(), pytest.raises(ValueError):
        run(reader, client, stop, loop)
    assert stop.waits == []


def test_after_stop_the_reader_just_ends(reader: Reader, loop: asyncio.AbstractEventLoop) -> None:
    """``aclose`` sets ``stop`` and shuts the stream from another thread: what reading the
    shut stream raises then is the close's doing, not a bug to report."""
    stop = Stop()

    class Shut(Stream):
        def __iter__(self) -> Iterator[dict[str, Any]]:
            stop.set()
            raise AttributeError("'NoneType' object has no attribute 'read'")

    client = Client([lambda: Shut([])])
    with structlog.testing.capture_logs() as logs:
        assert run(reader, client, stop, loop) == []
    assert not [e for e in logs if e["log_level"] == "error"]
