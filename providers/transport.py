"""The transport under every forge request: :class:`ForgeTransport`.

A ``requests`` transport adapter mounted on each provider's ``requests.Session`` (a
public hook of ``requests``; python-gitlab takes the session as its public ``session=``
argument), so every request, whether the adapter's own or one a library makes for it
(python-gitlab's pagination), passes it. In this order it:

1. refuses any request to another origin than the forge's (a ``Link`` or a redirect that
   points elsewhere never gets the token: python-gitlab would send ``PRIVATE-TOKEN`` on);
2. bounds the request by the call's overall deadline (``requests``' timeout is per read,
   so the body is read in pieces and the deadline is checked between them);
3. adds ``If-None-Match`` for a GET it has an ``ETag`` for and turns a ``304`` back into
   the cached ``200`` (:class:`~providers.wire.EtagCache`), so every list poll is
   conditional;
4. charges the forge's :class:`~providers.budget.Budget` with the call's priority
   (``304``\\ s too) and reports ``(forge, endpoint, status)`` to the observer;
5. reads the rate-limit headers and maps an error status to :mod:`providers.errors`
   (:func:`~providers.wire.error_for`, the only status -> error table), so libraries
   never see an error answer.

What it needs of its forge (name, limits, budget, ETags, the call context) is
:class:`providers.http.ForgeHTTP`, which mounts it.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from providers.budget import Priority
from providers.errors import DeadlineExceeded, PermanentProviderError
from providers.wire import Entry, header

if TYPE_CHECKING:
    from providers.http import ForgeHTTP

#: An answer body larger than this is refused (a forge page is a few hundred KiB).
MAX_BODY_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# ---------------------------------------------------------------------------------------
# The transport


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Timeouts and wait bounds of one forge (from its provider options)."""

    request_timeout_s: float = 15.0  # connect and per-read
    call_deadline_s: float = 60.0  # a whole call, every page included
    min_wait_s: float = 1.0  # clamp for every wait a forge asks for
    max_wait_s: float = 900.0
    max_concurrency: int = 4


@dataclasses.dataclass(frozen=True, slots=True)
class CallContext:
    priority: Priority
    deadline: float  # time.monotonic()


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` with the default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


class ForgeTransport(HTTPAdapter):
    """``requests`` transport that sees, bounds, budgets and maps every request."""

    def __init__(self, forge: ForgeHTTP) -> None:
        super().__init__(pool_maxsize=max(4, forge.limits.max_concurrency))
        self._forge = forge

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        forge = self._forge
        url = request.url or ""
        forge.require_same_origin(url)
        ctx = forge.context()
        left = ctx.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{forge.name}: call deadline passed before {request.method}")
        per_read = min(forge.limits.request_timeout_s, left)
        cached = forge.etags.get(url) if request.method == "GET" else None
        if cached is not None:
            request.headers["If-None-Match"] = cached.etag
        template = forge.template(request.method or "GET", url)
        forge.budget.charge(ctx.priority)
        try:
            response = super().send(
                request,
                stream=True,
                timeout=(per_read, per_read),
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
        except requests.RequestException:
            forge.observe(template, 0)
            raise
        forge.observe(template, response.status_code)
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                target = urljoin(url, response.headers["location"])
                forge.require_same_origin(target, redirect_from=url)
            body = self._read(response, ctx)
        finally:
            response.close()
        return self._finish(request, response, body, cached)

    def _read(self, response: requests.Response, ctx: CallContext) -> bytes:
        """The whole body, a piece at a time, never past the call's deadline."""
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
        pieces: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > ctx.deadline:
                raise DeadlineExceeded(
                    f"{self._forge.name}: answer still arriving at the call deadline "
                    f"({self._forge.limits.call_deadline_s:.0f}s)"
                )
            try:
                piece = read(_CHUNK, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as exc:  # as requests' iter_content maps
                raise requests.exceptions.ReadTimeout(exc) from exc
            except urllib3.exceptions.DecodeError as exc:
                raise requests.exceptions.ContentDecodingError(exc) from exc
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as exc:
                raise requests.exceptions.ChunkedEncodingError(exc) from exc
            if not piece:
                return b"".join(pieces)
            size += len(piece)
            if size > MAX_BODY_BYTES:
                raise PermanentProviderError(f"{self._forge.name}: answer over {MAX_BODY_BYTES} B")
            pieces.append(piece)

    def _finish(
        self,
        request: requests.PreparedRequest,
        response: requests.Response,
        body: bytes,
        cached: Entry | None,
    ) -> requests.Response:
        forge = self._forge
        status = response.status_code
        headers = dict(response.headers.items())
        forge.saw(status, headers)
        if status == 304 and cached is not None:
            forge.etags.hits += 1
            return self._rebuild(request, 200, cached.headers, cached.body, "OK")
        error = forge.error_for(status, headers, body)
        if error is not None:
            raise error
        url = request.url or ""
        etag = header(headers, "etag")
        if request.method == "GET" and status == 200:
            if etag:
                forge.etags.put(url, Entry(etag, headers, body))
            else:
                forge.etags.drop(url)
        return self._rebuild(request, status, headers, body, response.reason or "")

    def _rebuild(
        self,
        request: requests.PreparedRequest,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        reason: str,
    ) -> requests.Response:
        """A complete response over the bytes already read (decoded; no encoding left)."""
        skip = {"content-encoding", "content-length", "transfer-encoding"}
        clean = {k: v for k, v in headers.items() if k.lower() not in skip}
        clean["Content-Length"] = str(len(body))
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=clean,
            status=status,
            reason=reason,
            preload_content=False,
            decode_content=False,
            request_method=request.method,
            request_url=request.url,
        )
        return self.build_response(request, raw)
