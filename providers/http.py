"""The one forge-request layer under every adapter (GitLab, GitHub, the next one).

Every HTTP request a provider sends passes :class:`~providers.transport.ForgeTransport`
(origin check, deadline, ETags, budget, status -> error), mounted on the session of the
forge's :class:`ForgeHTTP`.

:class:`ForgeHTTP` runs blocking calls in worker threads: admitted by priority, at most
``max_concurrency`` at a time, and the awaiting caller is released at the deadline even
if a thread is still stuck in a header read (that thread keeps its slot until it ends, so
a trickling forge slows only itself). :func:`forge_http` builds one, with its budget and
rate gate, from a provider's options.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import requests
import structlog

from providers.base import RequestObserver
from providers.budget import Budget, Priority, RateGate, Sleep
from providers.errors import (
    DeadlineExceeded,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    UnsafeRedirect,
)
from providers.transport import MAX_BODY_BYTES, CallContext, ForgeTransport, Limits, origin
from providers.wire import EtagCache, RateView, error_for, number

T = TypeVar("T")

__all__ = [
    "MAX_BODY_BYTES",
    "CallContext",
    "ForgeHTTP",
    "ForgeReach",
    "ForgeTransport",
    "Limits",
    "forge_http",
    "origin",
]

log = structlog.get_logger("providers.http")

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

    def context(self) -> CallContext:
        ctx = getattr(self._local, "ctx", None)
        if isinstance(ctx, CallContext):
            return ctx
        return CallContext(Priority.SWEEP, time.monotonic() + self.limits.call_deadline_s)

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
        ctx = CallContext(priority, deadline)
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

    def _in_thread(self, ctx: CallContext, fn: Callable[[], T]) -> T:
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
