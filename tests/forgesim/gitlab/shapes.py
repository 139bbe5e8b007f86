"""GitLab's two 429 answers, shared by the limiter (state) and the ``rate_limit`` fault."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.forgesim.faults import header_value

LIMITER_MESSAGE = "This endpoint has been requested too many times. Try again later."


def jobs_limiter_429(retry_after: Any = None) -> web.Response:
    """429 of ``Gitlab::ApplicationRateLimiter`` endpoints such as ``jobs_index``.

    Source: ``lib/api/helpers/rate_limiter.rb`` ``render_exceeded_limit_error!`` ->
    ``render_api_error!({error: ...}, 429)``: the body nests the error in ``message`` and
    Grape sets no rate-limit header at all. Issue 11 saw ``Retry-After`` alone on some
    instances, hence the optional header (and GitLab issue 365728 on missing headers)."""
    headers = {} if retry_after is None else {"Retry-After": header_value(retry_after)}
    return web.json_response({"message": {"error": LIMITER_MESSAGE}}, status=429, headers=headers)


def rack_attack_429(retry_after: Any, limit: int = 600, observed: int = 601) -> web.Response:
    """429 of the user/IP throttles (Rack::Attack; off by default on self-managed).

    Source: ``lib/gitlab/rack_attack.rb`` ``throttled_response`` and
    ``throttled_response_headers``: text/plain ``Retry later\\n``
    (``Gitlab::Throttle.rate_limiting_response_text``) with RateLimit-Name/-Limit/
    -Observed/-Remaining/-Reset/-ResetTime and Retry-After."""
    reset = int(time.time()) + 60
    headers = {
        "RateLimit-Name": "throttle_authenticated_api",
        "RateLimit-Limit": str(limit),
        "RateLimit-Observed": str(observed),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(reset),
        "RateLimit-ResetTime": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(reset)),
        "Retry-After": header_value(retry_after),
    }
    return web.Response(
        text="Retry later\n", status=429, content_type="text/plain", headers=headers
    )
