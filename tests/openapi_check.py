"""Validate any response the suite sees against the daemon's own OpenAPI document.

Used by the HTTP tests (every answer they get is checked) and by the fuzz tests. A
handler that answers a status, content type or body shape the document does not
describe fails here, so the document cannot quietly drift from the code.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.testing import MockRequest, MockResponse

from orchestrator.openapi import document

#: openapi-core matches requests against the document's ``servers``; the port of the
#: daemon under test varies, so every request is presented as if sent to this one.
SERVER = "http://127.0.0.1:8080"


@functools.cache
def api() -> OpenAPI:
    return OpenAPI.from_dict(document())


def check_response(method: str, path: str, status: int, headers: Any, body: bytes) -> None:
    """Raise (with the reason) unless the document allows this answer to this request."""
    if method.upper() == "HEAD":
        return  # aiohttp answers HEAD for every GET route; no body to check
    split = urlsplit(path)
    request = MockRequest(
        SERVER,
        method,
        split.path,
        args=dict(parse_qsl(split.query)),
    )
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    content_type = str(lowered.get("content-type", "")).split(";")[0].strip()
    response = MockResponse(
        body, status_code=status, headers=dict(headers), content_type=content_type
    )
    result = api().unmarshal_response(request, response)
    if result.errors and isinstance(result.errors[0], PathError):
        # No document can list the paths that do not exist: those must be a JSON error.
        assert status in (404, 405), f"{method} {path} -> {status} on an undocumented path"
        assert content_type == "application/json" and "error" in json.loads(body), body[:300]
        return
    if result.errors:
        raise AssertionError(
            f"{method} {path} -> {status} {content_type}: not as documented: "
            f"{[str(e) for e in result.errors]} body={body[:300]!r}"
        )
