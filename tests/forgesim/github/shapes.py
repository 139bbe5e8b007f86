"""GitHub's refusals as GitHub words them: error bodies, the primary and secondary limits.

Sources (each function names its own): GitHub's REST docs "Rate limits for the REST API"
(primary: 403 or 429 with ``x-ratelimit-remaining: 0``; secondary: 403 or 429, with
``retry-after`` or without), PyGithub's ``Requester.isPrimaryRateLimitError`` /
``isSecondaryRateLimitError`` and its ``tests/GithubRetry.py`` fixtures (message and
``documentation_url`` texts), and the ``basic-error`` schema of the OpenAPI description
(``message``, ``documentation_url``, ``status``).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.forgesim.faults import header_value

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
# The older wording, still matched by clients (PyGithub: "...please wait a few minutes
# before you try again."); documentation URL as GitHub sent it before the docs moved.
ABUSE_MESSAGE = (
    "You have triggered an abuse detection mechanism. "
    "Please wait a few minutes before you try again."
)
ABUSE_DOCS = "https://developer.github.com/v3/#abuse-rate-limits"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID "
    "C0DE:5EC0:1D:2B:6A0B1C2D."
)


def error_body(status: int, message: str, docs: str = DOCS) -> dict[str, Any]:
    """``basic-error``: GitHub now also echoes the status as a string."""
    return {"message": message, "documentation_url": docs, "status": str(status)}


def error(status: int, message: str, docs: str = DOCS) -> web.Response:
    return web.json_response(error_body(status, message, docs), status=status)


def primary_limit(
    status: int = 403, limit: int = 5000, reset_at: float | None = None
) -> web.Response:
    """The primary limit is spent: 403 (or 429), ``x-ratelimit-remaining: 0`` and the reset
    (docs: "exceeding your primary rate limit ... 403 or 429 ... x-ratelimit-remaining 0")."""
    reset = int(reset_at if reset_at is not None else time.time() + 3600)
    answer = error(
        status,
        "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for "
        "help, please include the request ID C0DE:5EC0:1D:2B:6A0B1C2D and timestamp "
        + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        RATE_DOCS,
    )
    answer.headers.update(
        {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": str(limit),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core",
        }
    )
    return answer


def secondary_limit(
    status: int = 403, retry_after: Any = None, wording: str = "secondary"
) -> web.Response:
    """A secondary limit: 403 (or 429), ``retry-after`` or not, remaining budget untouched.

    ``wording="abuse"`` answers the older "abuse detection mechanism" text (403, as GitHub
    sent it, with or without Retry-After)."""
    if wording == "abuse":
        answer = web.json_response(
            {"message": ABUSE_MESSAGE, "documentation_url": ABUSE_DOCS}, status=status
        )
    else:
        answer = error(status, SECONDARY_MESSAGE, SECONDARY_DOCS)
    if retry_after is not None:
        answer.headers["Retry-After"] = header_value(retry_after)
    return answer
