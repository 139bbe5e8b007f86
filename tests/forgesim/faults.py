"""The fault book shared by both simulators: bounded rules, the generic faults, the trap.

A fault is a :class:`FaultRule`: a ``kind``, an optional ``match`` (regex searched in the
raw request path, without the query) and ``method``, and two bounds: ``seconds`` (always;
capped at :data:`MAX_SECONDS`) and an optional ``count`` of requests it answers. A rule
past either bound is dead, so no test can hang on a fault it forgot to clear.

Rules are added over HTTP (``POST /_sim/faults``, see :func:`add_fault_from_json`) or in
process (``sim.faults.add("slow", seconds=5, delay=2)``). Kinds handled here, for every
forge request (everything outside ``/_sim/``):

* ``status`` ``{status, retry_after?, body?}``: answer ``status`` (the old global fault;
  ``POST /_sim/faults {"status": 503, "seconds": 5}`` without ``kind`` still means this).
* ``slow`` ``{delay}``: wait ``delay`` seconds (at most :data:`MAX_DELAY`, and never past
  the rule's deadline) before answering.
* ``trickle`` ``{interval, bytes?}``: send the real answer's body one byte every
  ``interval`` seconds (the first ``bytes`` bytes; default all), then the rest at once
  when the rule's deadline passes. Headers (with the true ``Content-Length``) go first,
  as a slow server's would, so only an overall deadline in the client stops the wait.
* ``redirect`` ``{host?: "127.0.0.1"|"localhost", status?: 302}``: answer a redirect to
  the same path on the trap server, another loopback port (a different origin). The
  trap answers 200 ``[]`` and records which credential headers reached it
  (``GET /_sim/stats`` -> ``trap``), so a test can show the client refused to follow.

Each forge registers its own answer kinds (403/429 shapes; see ``gitlab/faults.py`` and
``github/faults.py``) and reads "state" kinds (``churn``, ``id_links``,
``secondary_limit``, ...) with :meth:`FaultBook.active` where it builds its answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

MAX_SECONDS = 900.0  # no fault outlives this, whatever a test asks
MAX_DELAY = 60.0  # one slow answer waits at most this long
MAX_TRICKLE_INTERVAL = 30.0
GENERIC_KINDS = frozenset({"status", "slow", "trickle", "redirect"})
CREDENTIAL_HEADERS = ("authorization", "private-token", "job-token")


class FaultError(ValueError):
    """A fault description the book cannot take (answered 400 by the control route)."""


@dataclasses.dataclass
class FaultRule:
    id: int
    kind: str
    until: float  # time.monotonic() deadline
    count: int | None  # requests it may still answer; None = until the deadline
    match: re.Pattern[str] | None
    method: str | None
    params: dict[str, Any]
    hits: int = 0

    def live(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now < self.until and (self.count is None or self.count > 0)

    def applies(self, method: str, raw_path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self.match is None or self.match.search(raw_path) is not None

    def consume(self) -> None:
        self.hits += 1
        if self.count is not None:
            self.count -= 1

    def remaining_seconds(self) -> float:
        return max(0.0, self.until - time.monotonic())

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "match": None if self.match is None else self.match.pattern,
            "method": self.method,
            "count": self.count,
            "seconds_left": round(self.remaining_seconds(), 3),
            "hits": self.hits,
            "params": self.params,
        }


class FaultBook:
    """The live rules of one simulator; first added, first applied."""

    def __init__(self, kinds: Iterable[str] = ()) -> None:
        self.kinds = set(GENERIC_KINDS) | set(kinds)
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(
        self,
        kind: str,
        *,
        seconds: float = 60.0,
        count: int | None = None,
        match: str | None = None,
        method: str | None = None,
        **params: Any,
    ) -> FaultRule:
        if kind not in self.kinds:
            raise FaultError(f"unknown fault kind {kind!r}; known: {sorted(self.kinds)}")
        if not (seconds > 0):  # also rejects NaN
            raise FaultError("seconds must be > 0 (every fault is bounded)")
        if count is not None and count < 1:
            raise FaultError("count must be >= 1")
        try:
            pattern = None if match is None else re.compile(match)
        except re.error as exc:
            raise FaultError(f"match is not a regex: {exc}") from None
        rule = FaultRule(
            id=next(self._ids),
            kind=kind,
            until=time.monotonic() + min(float(seconds), MAX_SECONDS),
            count=count,
            match=pattern,
            method=None if method is None else method.upper(),
            params=params,
        )
        self.rules.append(rule)
        return rule

    def _prune(self) -> None:
        now = time.monotonic()
        self.rules = [r for r in self.rules if r.live(now)]

    def take(self, kinds: Iterable[str], method: str, raw_path: str) -> FaultRule | None:
        """The first live rule of ``kinds`` for this request, with one use spent."""
        rule = self.active(kinds, method, raw_path)
        if rule is not None:
            rule.consume()
        return rule

    def active(
        self, kinds: Iterable[str] | str, method: str | None = None, raw_path: str | None = None
    ) -> FaultRule | None:
        """The first live rule of ``kinds`` (for this request, when given); none spent."""
        wanted = {kinds} if isinstance(kinds, str) else set(kinds)
        self._prune()
        for rule in self.rules:
            if rule.kind not in wanted:
                continue
            if method is not None and raw_path is not None and not rule.applies(method, raw_path):
                continue
            return rule
        return None

    def clear(self) -> None:
        """Drop every rule and end the ones still at work (a slow answer, a trickle)."""
        for rule in self.rules:
            rule.until = 0.0
        self.rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        self._prune()
        return [r.describe() for r in self.rules]


def header_value(value: Any) -> str:
    """A header as a test asked for it: strings verbatim ("1e15", "soon"), whole numbers
    as integers (``86400``), other numbers as Python writes them (``-1.5``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return str(int(value))
    return repr(value)


def status_answer(rule: FaultRule) -> web.Response:
    """The ``status`` kind: ``{"message": "simulated N"}`` (or ``body``), Retry-After."""
    status = int(rule.params.get("status", 503))
    headers = {}
    if rule.params.get("retry_after") is not None:
        headers["Retry-After"] = header_value(rule.params["retry_after"])
    body = rule.params.get("body", {"message": f"simulated {status}"})
    return web.json_response(body, status=status, headers=headers)


async def sleep_while_live(rule: FaultRule, seconds: float) -> None:
    """Sleep ``seconds``, but no longer than the rule lives (cleared rules end at once)."""
    end = time.monotonic() + max(0.0, min(seconds, MAX_DELAY))
    while (left := min(end - time.monotonic(), rule.remaining_seconds())) > 0:
        await asyncio.sleep(min(left, 0.05))


async def slow_down(rule: FaultRule) -> None:
    await sleep_while_live(rule, float(rule.params.get("delay", 1.0)))


async def trickle(
    request: web.Request, answer: web.StreamResponse, rule: FaultRule
) -> web.StreamResponse:
    """Send ``answer`` (a prepared-able Response) one byte every ``interval`` seconds."""
    body = (
        answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b""
    )
    interval = max(0.0, min(float(rule.params.get("interval", 1.0)), MAX_TRICKLE_INTERVAL))
    slow_bytes = min(int(rule.params.get("bytes", len(body))), len(body))
    stream = web.StreamResponse(status=answer.status, reason=answer.reason)
    for key, value in answer.headers.items():
        if key.lower() not in {"content-length", "transfer-encoding"}:
            stream.headers.add(key, value)
    stream.content_length = len(body)
    await stream.prepare(request)
    sent = 0
    try:
        while sent < slow_bytes and rule.remaining_seconds() > 0:
            await stream.write(body[sent : sent + 1])
            sent += 1
            await sleep_while_live(rule, interval)
        await stream.write(body[sent:])
        await stream.write_eof()
    except ConnectionError:  # the client gave up waiting: that is the point
        pass
    return stream


class Trap:
    """A second listener on another loopback port: where ``redirect`` faults point.

    It answers ``200 []`` to anything and records the method, path and which credential
    headers arrived (names only, never values)."""

    def __init__(self) -> None:
        self.port = 0
        self.hits: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    async def _any(self, request: web.Request) -> web.Response:
        self.hits.append(
            {
                "method": request.method,
                "path": request.raw_path,
                "credentials": sorted(
                    h for h in CREDENTIAL_HEADERS if h in {k.lower() for k in request.headers}
                ),
            }
        )
        return web.json_response([])

    async def ensure(self) -> int:
        async with self._lock:
            if self._runner is None:
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._any)
                runner = web.AppRunner(app, handle_signals=False, access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor
                sockets = getattr(server, "sockets", None) or []
                self.port = sockets[0].getsockname()[1]
                self._runner = runner
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def redirect_answer(request: web.Request, rule: FaultRule, trap_port: int) -> web.Response:
    host = str(rule.params.get("host", "127.0.0.1"))
    if host not in {"127.0.0.1", "localhost"}:
        host = "127.0.0.1"  # loopback only: the sim never points a client elsewhere
    status = int(rule.params.get("status", 302))
    location = f"http://{host}:{trap_port}{request.raw_path}"
    return web.Response(status=status, headers={"Location": location})


def add_fault_from_json(
    book: FaultBook, body: Any, expand: Callable[[str, dict[str, Any]], str | None]
) -> FaultRule | None:
    """``POST /_sim/faults`` body -> a rule (None when the body only cleared faults).

    Without ``kind`` this is the old global fault ``{status, seconds, retry_after?,
    delay?}``: it replaces the previous such fault, and ``{"status": 0, "seconds": 0}``
    clears it. ``expand(kind, params)`` may turn a forge convenience (``project``,
    ``repo``) into a ``match`` regex."""
    if not isinstance(body, dict):
        raise FaultError("want a JSON object")
    params = dict(body)
    legacy = "kind" not in params
    kind = str(params.pop("kind", "status"))
    try:
        seconds = float(params.pop("seconds", 60.0))
        count_raw = params.pop("count", None)
        count = None if count_raw is None else int(count_raw)
        delay = float(params.pop("delay", 0) or 0)
        status = int(params.get("status", 0) or 0)
    except (TypeError, ValueError):
        raise FaultError("seconds, delay and status must be numbers, count an integer") from None
    match = params.pop("match", None)
    method = params.pop("method", None)
    if match is None:
        match = expand(kind, params)
    bounds: dict[str, Any] = {
        "seconds": seconds,
        "count": count,
        "match": None if match is None else str(match),
        "method": None if method is None else str(method),
    }
    if legacy:
        book.rules = [r for r in book.rules if not r.params.get("legacy")]
        if seconds <= 0:
            return None
        rule = None
        if delay > 0:
            rule = book.add("slow", **bounds, delay=delay, legacy=True)
        if status:
            rule = book.add("status", **bounds, **params, legacy=True)
        if rule is None:
            raise FaultError("want a non-zero status or a delay")
        return rule
    if kind == "slow" and delay > 0:
        params["delay"] = delay
    if kind == "status" and not status:
        raise FaultError("status faults need a non-zero status")
    return book.add(kind, **bounds, **params)
