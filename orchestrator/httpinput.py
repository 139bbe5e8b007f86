"""What the HTTP API accepts from clients: bodies, query parameters and Host headers.

Each function turns one kind of hostile or careless input into a 4xx with one line of
reason (a :class:`BadBody` or :class:`BadQuery` the handler answers), never a 500. The
faults they guard against came from a fuzzing session: 100k-deep JSON (RecursionError),
a 5,000-digit number (ValueError from the int conversion limit), ``charset=bogus``
(LookupError), bodies that never finish, and a Host header naming someone else's site
(DNS rebinding).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from orchestrator.config import Settings

#: A request body must have arrived completely within this many seconds (else 408).
BODY_READ_S = 10.0


class BadBody(Exception):
    """A request body we refuse, with the 4xx status and the one-line reason to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes, arrived within :data:`BODY_READ_S`.

    Reads until EOF (one ``read(n)`` may return a partial body when it arrives in
    several TCP segments) and refuses early on a declared or actual oversize body.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BadBody(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0

    async def consume() -> None:
        nonlocal size
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise BadBody(413, f"body larger than {limit} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(consume(), BODY_READ_S)
    except TimeoutError:
        raise BadBody(408, f"body not received within {BODY_READ_S:g} s") from None
    return b"".join(chunks)


def parse_json(request: web.Request, body: bytes) -> Any:
    """Decode ``body`` as JSON in the request's charset; every malformed body is a BadBody.

    The failures this maps are the ones hostile input produces: an unknown charset
    (LookupError), bytes that are not that charset, invalid JSON or a number longer than
    Python's int conversion limit (ValueError), and nesting deeper than the parser's
    recursion limit (RecursionError).
    """
    charset = request.charset or "utf-8"
    try:
        text = body.decode(charset)
    except LookupError:
        raise BadBody(415, "unknown charset in Content-Type") from None
    except UnicodeDecodeError:
        raise BadBody(400, f"body is not valid {charset}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadBody(400, "body is not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer beyond the digit limit
        raise BadBody(400, f"body is not JSON: {str(exc)[:80]}") from None


class BadQuery(Exception):
    """A query parameter we refuse (400), with the one-line reason."""


def int_query(
    request: web.Request, name: str, default: int | None, low: int, high: int
) -> int | None:
    """Query parameter ``name`` as an integer in ``low..high`` (absent: ``default``)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or not low <= int(raw) <= high:
        raise BadQuery(f"{name}: integer from {low} to {high}")
    return int(raw)


def text_query(request: web.Request, name: str, longest: int = 200) -> str | None:
    raw = request.query.get(name)
    if raw is not None and not 1 <= len(raw) <= longest:
        raise BadQuery(f"{name}: 1 to {longest} characters")
    return raw


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD = frozenset({"0.0.0.0", "::"})


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """Host header values the API answers to; None: any (see HTTP_ALLOWED_HOSTS).

    Default: loopback names and the bind address, so a web page whose DNS name is
    rebound to 127.0.0.1 cannot read the API from a browser on this machine. Bound to a
    wildcard address with no list configured, any Host is accepted (the operator exposed
    the API on purpose; set HTTP_ALLOWED_HOSTS to the names it is reached by).
    """
    configured = {h.strip().lower().strip("[]") for h in settings.http_allowed_hosts}
    if "*" in configured:
        return None
    bind = settings.http_host.strip().lower().strip("[]")
    if not configured and bind in _WILDCARD:
        return None
    return frozenset(_LOOPBACK | {bind} | configured)


def host_name(header: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header
