"""The one forge-request layer under every adapter (GitLab, GitHub, the next one).

Every HTTP request a provider sends, whether its own or one a library makes for it
(python-gitlab's pagination), passes through :class:`ForgeTransport`, a
``requests`` transport adapter mounted on the provider's ``requests.Session`` (a public
hook of ``requests``; python-gitlab takes the session as its public ``session=``
argument). The transport, in this order:

1. refuses any request to another origin than the forge's (a ``Link`` or a redirect that
   points elsewhere never gets the token: python-gitlab would send ``PRIVATE-TOKEN`` on);
2. bounds the request by the call's overall deadline (``requests``' timeout is per read,
   so the body is read in pieces and the deadline is checked between them);
3. adds ``If-None-Match`` for a GET it has an ``ETag`` for and turns a ``304`` back into
   the cached ``200`` (:class:`EtagCache`), so every list poll is conditional;
4. charges the forge's :class:`~providers.budget.Budget` with the call's priority
   (``304``\\ s too) and reports ``(forge, endpoint, status)`` to the observer;
5. reads the rate-limit headers and maps an error status to :mod:`providers.errors`
   (:func:`error_for`, the only status -> error table), so libraries never see an
   error answer.

:class:`ForgeHTTP` runs blocking calls in worker threads: admitted by priority, at most
``max_concurrency`` at a time, and the awaiting caller is released at the deadline even
if a thread is still stuck in a header read (that thread keeps its slot until it ends, so
a trickling forge slows only itself).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import structlog
import urllib3
from requests.adapters import HTTPAdapter

from providers.base import RequestObserver
from providers.budget import Budget, Priority, RateGate, Sleep
from providers.errors import (
    DeadlineExceeded,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    UnsafeRedirect,
)
from providers.wire import Entry as _Entry
from providers.wire import EtagCache, RateView, error_for, header, number

T = TypeVar("T")

log = structlog.get_logger("providers.http")

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
class _Context:
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

    def _read(self, response: requests.Response, ctx: _Context) -> bytes:
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
        cached: _Entry | None,
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
                forge.etags.put(url, _Entry(etag, headers, body))
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


# ---------------------------------------------------------------------------------------
# The per-forge client


class ForgeHTTP:
    """Session, budget, rate gate, ETag cache and worker threads of one forge."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        limits: Limits,
        budget: Budget,
        gate: RateGate,
        rate: RateView,
        template: Callable[[str, str], str],
        observer: RequestObserver,
        session: requests.Session | None = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self.budget = budget
        self.gate = gate
        self.rate = rate
        self.template = template
        self.etags = EtagCache()
        self.requests_total = 0
        self._origin = origin(base_url)
        self._observer = observer
        self._local = threading.local()
        self._lock = threading.Lock()
        self._slots = asyncio.Semaphore(limits.max_concurrency)
        self._closed = False
        self.session = session or requests.Session()
        transport = ForgeTransport(self)
        self.session.mount("http://", transport)
        self.session.mount("https://", transport)

    # -- called by the transport, in worker threads --------------------------------

    def context(self) -> _Context:
        ctx = getattr(self._local, "ctx", None)
        if isinstance(ctx, _Context):
            return ctx
        return _Context(Priority.SWEEP, time.monotonic() + self.limits.call_deadline_s)

    def require_same_origin(self, url: str, *, redirect_from: str = "") -> None:
        """Refuse a request (or redirect) to another host: the token must not go there."""
        target = origin(url)
        ours = self._origin
        upgrade = target[0] == "https" and ours[0] == "http" and target[1] == ours[1]
        if target == ours or upgrade:
            return
        where = f"{target[0]}://{target[1]}:{target[2]}"
        home = f"{ours[0]}://{ours[1]}:{ours[2]}"
        if redirect_from:
            raise UnsafeRedirect(
                f"{self.name}: refused a redirect from {home} to {where}; credentials are "
                "only sent to the configured forge URL (set it to the final URL if right)"
            )
        raise UnsafeRedirect(f"{self.name}: refused a request to {where}; the forge is {home}")

    def observe(self, template: str, status: int) -> None:
        with self._lock:
            self.requests_total += 1
        try:
            self._observer(self.name, template, status)
        except Exception:  # a metrics bug must not break a forge call, but it is a bug: say so
            log.exception("forge.observer_failed", forge=self.name, endpoint=template)

    def saw(self, status: int, headers: Mapping[str, str]) -> None:
        """Remember the rate-limit headers; a spent primary budget blocks until reset."""
        with self._lock:
            self.rate.update(headers)
            remaining, reset = self.rate.remaining, self.rate.reset_epoch
        if number(headers, self.rate.prefix + "remaining") == 0 and reset is not None:
            self.gate.spent_until(reset - time.time())
        if status < 400 and remaining != 0:
            self.gate.accepted()

    def error_for(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError | None:
        return error_for(self.name, status, headers, body, self.gate, self.rate, time.time())

    # -- called by adapters ----------------------------------------------------------

    async def call(
        self,
        priority: Priority,
        fn: Callable[[], T],
        translate: Callable[[Exception], ProviderError | None] = lambda _exc: None,
    ) -> T:
        """Run blocking ``fn`` (which may send several requests) under one deadline.

        ``translate`` maps the adapter's library exceptions; ``requests``' own are mapped
        here; anything else (a bug) propagates unchanged.
        """
        if self._closed:
            raise PermanentProviderError(f"{self.name}: provider is closed")
        self.gate.check(self.name)
        deadline = time.monotonic() + self.limits.call_deadline_s
        await self.budget.admit(priority, self.limits.call_deadline_s)
        ctx = _Context(priority, deadline)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._slots.acquire()
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.name}: every connection busy until the deadline"
            ) from None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._in_thread, ctx, fn)
        future.add_done_callback(lambda _f: self._slots.release())
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await asyncio.shield(future)
        except TimeoutError:
            future.add_done_callback(_consume)
            raise DeadlineExceeded(
                f"{self.name}: no complete answer within {self.limits.call_deadline_s:.0f}s"
            ) from None
        except ProviderError:
            raise
        except requests.Timeout as exc:
            raise TransientProviderError(f"{self.name}: timed out: {type(exc).__name__}") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientProviderError(f"{self.name}: connection failed: {exc}") from exc
        except requests.exceptions.ContentDecodingError as exc:
            raise TransientProviderError(f"{self.name}: garbled answer: {exc}") from exc
        except requests.RequestException as exc:
            raise PermanentProviderError(f"{self.name}: request failed: {exc}") from exc
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _in_thread(self, ctx: _Context, fn: Callable[[], T]) -> T:
        self._local.ctx = ctx
        try:
            return fn()
        finally:
            self._local.ctx = None

    def remaining_wait(self) -> float:
        return self.gate.remaining_wait()

    async def aclose(self) -> None:
        """Wait (at most one call deadline) for running calls, then close the session."""
        self._closed = True
        held = 0
        try:
            async with asyncio.timeout(self.limits.call_deadline_s):
                for _ in range(self.limits.max_concurrency):
                    await self._slots.acquire()
                    held += 1
        except TimeoutError:
            pass  # a thread stuck in a trickled header read: close under it, bounded
        try:
            await asyncio.to_thread(self.session.close)
        finally:
            for _ in range(held):
                self._slots.release()


class ForgeReach(Protocol):
    """What every forge's options say about reaching it (GitLab's and GitHub's alike)."""

    @property
    def name(self) -> str: ...
    @property
    def requests_per_minute(self) -> int: ...
    @property
    def request_timeout_s(self) -> float: ...
    @property
    def call_deadline_s(self) -> float: ...
    @property
    def min_retry_wait_s(self) -> float: ...
    @property
    def max_retry_wait_s(self) -> float: ...


def forge_http(
    options: ForgeReach,
    *,
    base_url: str,
    max_concurrency: int,
    default_wait_s: float,
    rate_prefix: str,
    template: Callable[[str, str], str],
    observer: RequestObserver,
    clock: Callable[[], float],
    sleep: Sleep,
) -> ForgeHTTP:
    """One forge's request layer from its options: its budget, its rate gate (a refusal
    that names no wait is waited ``default_wait_s`` first) and its limits; the forge's
    rate-limit headers start with ``rate_prefix``."""
    return ForgeHTTP(
        name=options.name,
        base_url=base_url,
        limits=Limits(
            request_timeout_s=options.request_timeout_s,
            call_deadline_s=options.call_deadline_s,
            min_wait_s=options.min_retry_wait_s,
            max_wait_s=options.max_retry_wait_s,
            max_concurrency=max_concurrency,
        ),
        budget=Budget(options.requests_per_minute, clock, sleep),
        gate=RateGate(
            clock,
            min_wait_s=options.min_retry_wait_s,
            max_wait_s=options.max_retry_wait_s,
            default_wait_s=default_wait_s,
        ),
        rate=RateView(rate_prefix),
        template=template,
        observer=observer,
    )


def _consume(future: asyncio.Future[Any]) -> None:
    """Fetch the result of an abandoned call so asyncio does not log it as unhandled."""
    if not future.cancelled():
        future.exception()
