"""structlog set-up: JSON when stderr is not a TTY, console otherwise; secrets redacted.

Redaction works two ways, because a secret can hide in any value:

* by key: any event key that names a secret (``token``, ``secret``, ``password``,
  ``jitconfig``, ``credential``, ``authorization``) has its value replaced;
* by value: strings are scanned for forge token shapes (``glpat-``, ``glrt-``,
  ``ghp_``, ``github_pat_``, ``ghs_``...) and for every secret value registered with
  :func:`register_secret` (forge tokens from config, each runner credential as it is
  minted), which are replaced wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "**redacted**"
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|jitconfig|jit_config|credential|authorization|api_key|private_key)",
    re.IGNORECASE,
)
_TOKEN_SHAPES = re.compile(
    r"(glpat-|glrt-|glptt-|gldt-|glcbt-|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_)[A-Za-z0-9_\-.]{6,}"
)
#: A PEM private key (a GitHub App's) pasted anywhere: masked whole.
_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so it is masked wherever it appears in a log line."""
    if value and len(value) >= 6:
        with _known_lock:
            _known.add(value)


def forget_secret(value: str | None) -> None:
    """Stop tracking a secret that no longer exists (a retired runner's credential)."""
    if value:
        with _known_lock:
            _known.discard(value)


def redact_text(text: str) -> str:
    """Mask registered secrets and token-shaped strings in ``text``."""
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return _PEM_KEY.sub(MASK, _TOKEN_SHAPES.sub(MASK, text))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (MASK if _SECRET_KEY.search(str(k)) else _redact_value(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets by key and by value."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler :func:`configure` installs (marked so a reconfigure replaces it)."""


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure logging once for the process (again to change it).

    Both kinds of log line go through the same processors, :func:`redact` included:
    structlog's own, and every stdlib ``logging`` record (PyGithub, urllib3, python-gitlab,
    aiohttp, apscheduler), which reaches the root logger's handler and is rendered by a
    structlog ``ProcessorFormatter``. Nothing the process logs skips redaction.
    """
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks without local variables: a frame's locals are where tokens live.
    tracebacks: Any = (
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        if use_json
        else structlog.processors.format_exc_info
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, tracebacks, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = _RedactingHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                tracebacks,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RedactingHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    logging.captureWarnings(True)  # warnings.warn(...) from libraries: redacted lines too
    # APScheduler reports every run of the reconcile job at INFO ("Running job...",
    # "executed successfully"); the scheduler logs what matters itself.
    logging.getLogger("apscheduler").setLevel(
        numeric_level if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    )
