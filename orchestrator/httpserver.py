"""Serving the HTTP API so that hostile or careless clients cannot take it down.

Before this, 1,100 idle sockets with the usual ``nofile`` of 1024 left ``/health``
unanswered for 40 s and wrote 333 MB of ``accept()`` tracebacks in 50 s, and slowloris
connections stayed open past 90 s. Three defences, all here:

* **Idle and header timeout.** aiohttp's keep-alive timer runs from the moment a
  connection is accepted and after every answer, and closes a connection still waiting
  for a complete request head when it fires: so :data:`IDLE_TIMEOUT_S` bounds both idle
  sockets and a slowloris head. Bodies are bounded by ``httpinput.BODY_READ_S`` (408).
* **A connection cap** (:data:`MAX_CONNECTIONS`, well below the usual ``nofile``). At the
  cap, a new connection makes room by closing the oldest connection that has no request
  in flight (idle or dribbling its head): an attacker's sockets go first, and a client
  that sends its request at once (``/health``) is served. If every connection is busy
  with a request, the new one gets a one-line 503 and is closed.
* **Rate-limited logging** of repeated errors (:class:`RateLimitFilter` on the
  ``asyncio`` and ``aiohttp`` loggers, :class:`RateLimiter` for our own lines): one line
  per kind per minute with the count of what was suppressed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("orchestrator.httpserver")

#: Most simultaneous client connections (the rest make room or get a 503).
MAX_CONNECTIONS = 256
#: Seconds a connection may stay without a complete request head (idle, or slowloris).
IDLE_TIMEOUT_S = 15.0
#: Pending connections the kernel queues before we accept them. asyncio also accepts up
#: to this many in one go before the cap sees any of them, so it is kept below the cap.
BACKLOG = 128
#: One log line per kind of repeated error per this many seconds.
LOG_WINDOW_S = 60.0

#: Requests in flight per connection (kept by the web/base.py middleware, read by the cap).
InFlight = dict[web.RequestHandler, int]

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: 44\r\n\r\n"
    b'{"error": "too many connections, try again"}'
)


class RateLimiter:
    """Say yes to one event per key per window; count the ones in between."""

    def __init__(
        self, window_s: float = LOG_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to drop this event; else how many were dropped since the last allowed."""
        now = self._clock()
        if now < self._next.get(key, float("-inf")):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if len(self._next) > 1000:  # keys come from code, but never grow without bound
            self._next.clear()
        self._next[key] = now + self.window_s
        return self._suppressed.pop(key, 0)


class RateLimitFilter(logging.Filter):
    """A stdlib log filter passing one record per (logger, message) per window."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or RateLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        suppressed = self.limiter.allow(f"{record.name}:{record.msg}")
        if suppressed is None:
            return False
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like this in the last minute)"
        return True


#: The loggers that repeat themselves under attack: asyncio's accept() errors
#: ("socket.accept() out of system resource" with a traceback, every retry) and aiohttp's
#: per-connection error lines.
NOISY_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access")


def install_log_limits() -> None:
    """Attach one :class:`RateLimitFilter` to each noisy logger (idempotent)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter())


class _Refuse(asyncio.Protocol):
    """Answer one line of 503 and close: every connection we keep is busy."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSED)
        transport.close()


class _CappedFactory:
    """The protocol factory: aiohttp's, with the connection cap in front of it."""

    def __init__(
        self,
        server: web.Server,
        in_flight: InFlight,
        max_connections: int,
        on_reject: Callable[[str], None],
    ) -> None:
        self._server = server
        self._in_flight = in_flight
        self._max = max_connections
        self._on_reject = on_reject
        self._limiter = RateLimiter()

    def __call__(self) -> asyncio.Protocol:
        # A closed connection stays in aiohttp's list until its handler task ends; only
        # open ones (transport still set) count and can make room.
        open_ = [c for c in self._server.connections if c.transport is not None]
        if len(open_) >= self._max:
            # Oldest first (aiohttp keeps them in accept order); never one serving a request.
            victim = next((c for c in open_ if not self._in_flight.get(c)), None)
            self._on_reject("connection_cap")
            suppressed = self._limiter.allow("cap")
            if suppressed is not None:
                log.warning(
                    "http.connection_cap",
                    max_connections=self._max,
                    action="closed the oldest idle connection" if victim else "refused (503)",
                    suppressed=suppressed,
                )
            if victim is None:
                return _Refuse()
            victim.force_close()
        return self._server()


def connection_cap(wanted: int) -> int:
    """``wanted``, but at most a quarter of the file descriptor limit (``nofile``).

    The rest is for the journal, Docker and forge connections, the runners
    log streams; a cap above the limit would let accept() fail with EMFILE again.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft // 4))


class HttpServer:
    """The running API server (what :func:`serve` returns)."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server) -> None:
        self._runner = runner
        self._server = server

    @property
    def port(self) -> int:
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else 0

    async def stop(self) -> None:
        """Stop accepting, then let aiohttp finish or close the open connections."""
        self._server.close()
        await self._runner.cleanup()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    in_flight: InFlight,
    on_reject: Callable[[str], None],
    max_connections: int | None = None,
    idle_timeout_s: float | None = None,
) -> HttpServer:
    """Serve ``app`` on ``host:port`` with the timeouts, cap and log limits above."""
    install_log_limits()
    cap = connection_cap(MAX_CONNECTIONS if max_connections is None else max_connections)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=IDLE_TIMEOUT_S if idle_timeout_s is None else idle_timeout_s,
    )
    await runner.setup()
    assert runner.server is not None
    factory = _CappedFactory(runner.server, in_flight, cap, on_reject)
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {"backlog": max(4, min(BACKLOG, cap // 2)), "reuse_address": True}
    try:
        server = await loop.create_server(factory, host, port, **kwargs)
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, server)
