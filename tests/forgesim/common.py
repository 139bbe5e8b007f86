"""Shared machinery of the forge simulators: request log, fault injection, serving.

Each half (``gitlab.py``, ``github.py``) builds its own :class:`aiohttp.web.Application`
with :func:`make_app`, which installs the middleware below and the shared control
endpoint ``POST /_sim/faults``. Control endpoints live under ``/_sim/`` and are never
recorded, never faulted and need no token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


@dataclasses.dataclass
class Fault:
    """Answer every non-control request with ``status`` (or slowly) until ``until``."""

    status: int = 0  # 0 = no status fault (only delay)
    until: float = 0.0  # time.monotonic() deadline
    retry_after: float | None = None
    delay: float = 0.0  # seconds added before answering ("slowly")

    def active(self) -> bool:
        return time.monotonic() < self.until


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    status: int
    at: float
    headers: dict[str, str]


class SimBase:
    """State every simulator shares: the request log and the current fault."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.fault = Fault()
        self.lock = asyncio.Lock()

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def set_fault(
        self, status: int, seconds: float, retry_after: float | None = None, delay: float = 0.0
    ) -> None:
        self.fault = Fault(
            status=status, until=time.monotonic() + seconds, retry_after=retry_after, delay=delay
        )


SIM_KEY: web.AppKey[SimBase] = web.AppKey("sim", SimBase)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _record_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if request.path.startswith("/_sim/"):
        return await handler(request)
    fault = sim.fault
    response: web.StreamResponse
    if fault.active() and fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.active() and fault.status:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        response = web.json_response(
            {"message": f"simulated {fault.status}"}, status=fault.status, headers=headers
        )
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    sim.requests.append(
        RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            status=response.status,
            at=time.monotonic(),
            headers={
                k: v
                for k, v in request.headers.items()
                if k.lower() not in {"authorization", "private-token", "job-token"}
            },
        )
    )
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _faults(request: web.Request) -> web.Response:
    """``POST /_sim/faults {"status": 429|500|503|0, "seconds": N, "retry_after": S,
    "delay": D}``: answer every forge request that way for N seconds."""
    try:
        body: dict[str, Any] = await request.json()
        status = int(body.get("status", 0))
        seconds = float(body["seconds"])
        retry_after = body.get("retry_after")
        delay = float(body.get("delay", 0.0))
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": "want {status, seconds, retry_after?, delay?}"}, status=400
        )
    request.app[SIM_KEY].set_fault(
        status, seconds, None if retry_after is None else float(retry_after), delay
    )
    return web.json_response({"ok": True})


def make_app(sim: SimBase) -> web.Application:
    """An application with the recording/fault middleware and ``POST /_sim/faults``."""
    app = web.Application(middlewares=[_record_and_fault], client_max_size=4 * 1024 * 1024)
    app[SIM_KEY] = sim
    app.router.add_post("/_sim/faults", _faults)
    return app


class RunningSim:
    """A simulator served on 127.0.0.1 at a random port, for tests (async context manager)."""

    def __init__(self, app: web.Application, port: int = 0) -> None:
        self.app = app
        self.port = port
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self.url = ""

    async def __aenter__(self) -> RunningSim:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
