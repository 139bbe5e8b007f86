"""Shared machinery of the forge simulators: request log, faults, stats, serving.

Each simulator (``gitlab/``, ``github/``) builds its :class:`aiohttp.web.Application` with
:func:`make_app`, which installs the recording/fault middleware below and the shared
control routes. Control routes live under ``/_sim/``: never recorded, never faulted, no
token.

* ``POST /_sim/faults``: add a fault (:mod:`tests.forgesim.faults`; the catalogue is in
  ``tests/forgesim/README.md``). ``GET /_sim/faults`` lists the live ones,
  ``DELETE /_sim/faults`` clears them all.
* ``GET /_sim/stats[?since=S]``: requests by class (:mod:`tests.forgesim.stats`), live
  faults, and what reached the redirect trap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from tests.forgesim import faults as fault_kinds
from tests.forgesim.faults import FaultBook, FaultError, FaultRule, Trap
from tests.forgesim.stats import OTHER, summarise

Answer = Callable[[FaultRule, web.Request], web.StreamResponse]


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    status: int
    at: float
    headers: dict[str, str]
    cls: str = OTHER


class SimBase:
    """State every simulator shares: the request log, the fault book, the trap.

    Each forge's ``create_app`` registers its own answer faults in ``answers`` (kind ->
    builder of the response) and a ``match_hook`` that turns a convenience such as
    ``project``/``repo`` into a path regex; the forge classifies requests for the stats
    (:meth:`classify`).
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.answers: dict[str, Answer] = {}
        self.match_hook: Callable[[str, dict[str, Any]], str | None] = lambda _k, _p: None
        self.faults = FaultBook()
        self.trap = Trap()
        self.lock = asyncio.Lock()

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def add_fault(self, kind: str, **body: Any) -> FaultRule:
        """In process, exactly as ``POST /_sim/faults {"kind": kind, **body}`` (so the
        ``project``/``repo`` conveniences work): ``sim.add_fault("forbidden", project=5)``."""
        rule = fault_kinds.add_fault_from_json(
            self.faults, {"kind": kind, **body}, self.fault_match
        )
        assert rule is not None  # only the old kind-less form clears
        return rule

    def set_fault(
        self, status: int, seconds: float, retry_after: float | None = None, delay: float = 0.0
    ) -> None:
        """The old global fault, in process: replaces the previous one (0 s clears)."""
        body: dict[str, Any] = {"status": status, "seconds": seconds, "delay": delay}
        if retry_after is not None:
            body["retry_after"] = retry_after
        fault_kinds.add_fault_from_json(self.faults, body, self.fault_match)

    def classify(self, method: str, path: str) -> str:  # noqa: ARG002 - forge overrides
        return OTHER

    def fault_match(self, kind: str, params: dict[str, Any]) -> str | None:
        return self.match_hook(kind, params)

    async def close(self) -> None:
        await self.trap.close()


SIM_KEY: web.AppKey[SimBase] = web.AppKey("sim", SimBase)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _raw_path(request: web.Request) -> str:
    return request.raw_path.split("?", 1)[0]


async def _answer(sim: SimBase, request: web.Request, handler: Handler) -> web.StreamResponse:
    method, path = request.method, _raw_path(request)
    book = sim.faults
    slow = book.take(["slow"], method, path)
    if slow is not None:
        await fault_kinds.slow_down(slow)
    redirect = book.take(["redirect"], method, path)
    if redirect is not None:
        return fault_kinds.redirect_answer(request, redirect, await sim.trap.ensure())
    rule = book.take(["status", *sim.answers], method, path)
    if rule is not None:
        if rule.kind == "status":
            return fault_kinds.status_answer(rule)
        return sim.answers[rule.kind](rule, request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return exc


@web.middleware
async def _record_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if request.path.startswith("/_sim/"):
        return await handler(request)
    response = await _answer(sim, request, handler)
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
                if k.lower() not in fault_kinds.CREDENTIAL_HEADERS
            },
            cls=sim.classify(request.method, request.path),
        )
    )
    trickle = sim.faults.take(["trickle"], request.method, _raw_path(request))
    if trickle is not None and not response.prepared:
        return await fault_kinds.trickle(request, response, trickle)
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _add_fault(request: web.Request) -> web.Response:
    """``POST /_sim/faults``: see :func:`tests.forgesim.faults.add_fault_from_json`."""
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
        rule = fault_kinds.add_fault_from_json(sim.faults, body, sim.fault_match)
    except ValueError as exc:  # FaultError, or a body that is not JSON
        message = str(exc) if isinstance(exc, FaultError) else "want a JSON object"
        return web.json_response({"error": message}, status=400)
    return web.json_response({"ok": True, "fault": None if rule is None else rule.describe()})


async def _list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[SIM_KEY].faults.describe()})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[SIM_KEY].faults.clear()
    return web.json_response({"ok": True})


async def _stats(request: web.Request) -> web.Response:
    """``GET /_sim/stats[?since=S]``: requests by class (of the last S seconds)."""
    sim = request.app[SIM_KEY]
    try:
        since = float(request.query["since"]) if "since" in request.query else None
    except ValueError:
        return web.json_response({"error": "since must be seconds"}, status=400)
    body = summarise(sim.requests, since)
    body["faults"] = sim.faults.describe()
    body["trap"] = {"port": sim.trap.port or None, "hits": sim.trap.hits}
    return web.json_response(body)


def make_app(
    sim: SimBase, answers: Mapping[str, Answer] | None = None, state_kinds: Iterable[str] = ()
) -> web.Application:
    """An application with the recording/fault middleware and the shared control routes;
    ``answers`` and ``state_kinds`` are the forge's own fault kinds."""
    sim.answers.update(answers or {})
    sim.faults.kinds.update([*sim.answers, *state_kinds])
    app = web.Application(middlewares=[_record_and_fault], client_max_size=4 * 1024 * 1024)
    app[SIM_KEY] = sim
    app.router.add_post("/_sim/faults", _add_fault)
    app.router.add_get("/_sim/faults", _list_faults)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_get("/_sim/stats", _stats)

    async def _end_faults(_app: web.Application) -> None:
        sim.faults.clear()  # before the server waits for handlers still slow or trickling

    async def _close(_app: web.Application) -> None:
        await sim.close()

    app.on_shutdown.append(_end_faults)
    app.on_cleanup.append(_close)
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
