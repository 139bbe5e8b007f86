"""Reading forge answers: the one time parser, wait parser, rate view and error table.

Pure functions and small values used by :mod:`providers.http` (which applies them to
every answer) and by the adapters (timestamps, ``Link`` headers). No I/O here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from providers.budget import RateGate
from providers.errors import (
    AccessDenied,
    HTTPStatusError,
    NotFound,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    TransientProviderError,
)

_RATE_WORDS = re.compile(r"rate.?limit|abuse|secondary", re.IGNORECASE)

# ---------------------------------------------------------------------------------------
# Parsing: the one time parser and the one wait parser


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp from a forge (``...Z``, ``...+00:00``, ``.000Z``) or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """Case-insensitive header lookup on any mapping."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return None if value is None else str(value)


def number(headers: Mapping[str, Any] | None, name: str) -> float | None:
    """A finite numeric header, or None (missing, garbage, ``inf``, ``nan``)."""
    raw = header(headers, name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def retry_after(headers: Mapping[str, Any] | None, now_epoch: float) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), unclamped; None when unusable."""
    seconds = number(headers, "Retry-After")
    if seconds is not None:
        return seconds
    raw = header(headers, "Retry-After")
    if not raw:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now_epoch


def next_link(link: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header."""
    for part in (link or "").split(","):
        match = re.match(r'\s*<([^>]+)>\s*;.*rel="?next"?', part)
        if match:
            return match.group(1)
    return None


def _message(body: bytes) -> str:
    """The forge's own message (``{"message": ...}`` / ``{"error": ...}``) or the start."""
    text = body[:2000].decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict):
            for key in ("message", "error", "error_description"):
                if isinstance(data.get(key), str | dict | list):
                    return str(data[key])[:300]
    return text[:300].strip()


# ---------------------------------------------------------------------------------------
# Status -> error: the one table


@dataclasses.dataclass
class RateView:
    """The rate-limit headers last seen (None: the forge never said)."""

    prefix: str  # "x-ratelimit-" (GitHub) or "ratelimit-" (GitLab)
    remaining: int | None = None
    limit: int | None = None
    reset_epoch: float | None = None

    def update(self, headers: Mapping[str, Any]) -> None:
        remaining = number(headers, self.prefix + "remaining")
        limit = number(headers, self.prefix + "limit")
        reset = number(headers, self.prefix + "reset")
        same_window = reset is None or reset == self.reset_epoch
        if remaining is not None:
            # Answers of concurrent requests arrive in any order: within one window the
            # lowest count is the newest; a new reset time starts a new window.
            fresh = max(0, int(remaining))
            old = self.remaining
            self.remaining = min(old, fresh) if same_window and old is not None else fresh
        if limit is not None:
            self.limit = max(0, int(limit))
        if reset is not None:
            self.reset_epoch = reset


def error_for(
    forge: str,
    status: int,
    headers: Mapping[str, Any],
    body: bytes,
    gate: RateGate,
    rate: RateView,
    now_epoch: float,
) -> ProviderError | None:
    """The :mod:`providers.errors` exception for an answer, or None for a success.

    A 429, or a 403 whose headers or text say rate limit / abuse / secondary, is a rate
    limit: wait ``Retry-After`` if usable, else until the primary reset if the budget is
    spent, else a default that doubles while refusals continue; always clamped. Any other
    403 is :class:`AccessDenied` (the caller decides whether it is one scope or the token).
    """
    if status < 400:
        return None
    message = _message(body)
    text = f"{forge}: HTTP {status}: {message}".strip()
    if status == 401:
        return ProviderAuthError(text)
    asked = retry_after(headers, now_epoch)
    spent = number(headers, rate.prefix + "remaining") == 0
    if status == 429 or (
        status == 403 and (asked is not None or spent or _RATE_WORDS.search(message))
    ):
        reset = number(headers, rate.prefix + "reset")
        if asked is None and reset is not None and (spent or status == 429):
            asked = reset - now_epoch
        return RateLimited(text, retry_after=gate.refused(asked))
    if status == 403:
        return AccessDenied(text, status)
    if status == 404:
        return NotFound(text, status)
    if status >= 500 or status in (408, 409, 425):
        return TransientProviderError(text, None if asked is None else gate.clamp(asked))
    return HTTPStatusError(text, status)


# ---------------------------------------------------------------------------------------
# ETag cache


@dataclasses.dataclass
class Entry:
    etag: str
    headers: dict[str, str]
    body: bytes


class EtagCache:
    """Last ``200`` of each GET URL that carried an ``ETag``, bounded in entries and bytes
    (least recently used out; an answer over a sixteenth of the byte bound is not kept),
    so 100 watched repositories cost a few MiB, not their worst case."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, url: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None:
                self._entries.move_to_end(url)
            return entry

    def put(self, url: str, entry: Entry) -> None:
        with self._lock:
            self._pop(url)
            if len(entry.body) > self._max_bytes // 16:
                return
            self._entries[url] = entry
            self._bytes += len(entry.body)
            while len(self._entries) > self._max or self._bytes > self._max_bytes:
                self._pop(next(iter(self._entries)))

    def _pop(self, url: str) -> None:
        old = self._entries.pop(url, None)
        if old is not None:
            self._bytes -= len(old.body)

    def drop(self, url: str) -> None:
        with self._lock:
            self._pop(url)

    def __len__(self) -> int:
        return len(self._entries)
