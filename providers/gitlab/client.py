"""The GitLab client: python-gitlab's HTTP helpers over the shared request layer.

python-gitlab is used below its object model, for ``http_get/post/put/delete`` and
``http_list`` (URL building under ``/api/v4``, ``PRIVATE-TOKEN``, JSON, ``Link``
pagination). It gets the layer's ``requests.Session`` through its public ``session=``
argument, so every request (every page too) passes :class:`providers.http.ForgeTransport`;
``obey_rate_limit=False`` and ``max_retries=0`` keep it from sleeping by itself (it would
sleep ~100 s on a 429), ``keep_base_url=True`` keeps pagination on the configured URL.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions

from providers.base import GitLabOptions, RequestObserver
from providers.budget import Priority, Sleep
from providers.errors import (
    NotFound,
    PermanentProviderError,
    ProviderError,
    RunnerNotFound,
    TransientProviderError,
)
from providers.gitlab.parse import endpoint_template
from providers.http import forge_http

T = TypeVar("T")
JSON = dict[str, Any]

#: How many forge calls may run in worker threads at once (per provider).
MAX_CONCURRENT_CALLS = 4
#: Page size for every list call: fewer pages means fewer requests against the budget.
PER_PAGE = 100
#: First guess when a 429 says neither Retry-After nor RateLimit-Reset (then doubles).
DEFAULT_RETRY_AFTER_S = 30.0


def _translate(exc: Exception) -> ProviderError | None:
    """python-gitlab's own exceptions (error *answers* never reach it: the transport maps
    them first). Anything else is not ours to translate and propagates."""
    if isinstance(exc, gitlab.exceptions.GitlabParsingError):
        return TransientProviderError(f"GitLab sent an unparsable answer: {exc}")
    if isinstance(exc, gitlab.exceptions.RedirectError):
        return PermanentProviderError(f"GitLab redirected a write request: {exc}")
    if isinstance(exc, gitlab.exceptions.GitlabError):
        code = exc.response_code or 0
        if code >= 500:
            return TransientProviderError(f"GitLab {code}: {exc.error_message}")
        return PermanentProviderError(f"GitLab {code}: {exc.error_message}")
    return None


class GitLabClient:
    """Budget, rate gate, session and python-gitlab of one GitLab instance."""

    def __init__(
        self,
        options: GitLabOptions,
        *,
        observer: RequestObserver,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.http = forge_http(
            options,
            base_url=options.url,
            max_concurrency=MAX_CONCURRENT_CALLS,
            default_wait_s=DEFAULT_RETRY_AFTER_S,
            rate_prefix="ratelimit-",
            template=endpoint_template,
            observer=observer,
            clock=clock,
            sleep=sleep,
        )
        self.budget, self.gate = self.http.budget, self.http.gate
        self.gl = gitlab.Gitlab(
            options.url,
            private_token=options.token,
            timeout=options.request_timeout_s,
            retry_transient_errors=False,
            per_page=PER_PAGE,
            keep_base_url=True,
            session=self.http.session,
        )

    async def call(self, priority: Priority, fn: Callable[[], T]) -> T:
        """One blocking call (any number of requests) through the shared layer."""
        return await self.http.call(priority, fn, _translate)

    async def runner_call(self, priority: Priority, fn: Callable[[], T]) -> T:
        """A call on one runner: its 404 means the runner is gone."""
        try:
            return await self.call(priority, fn)
        except NotFound as exc:
            raise RunnerNotFound(str(exc)) from exc

    def list(self, path: str, query: JSON | None = None, *, all_pages: bool = True) -> list[JSON]:
        """GET a list endpoint, following ``Link: rel=next`` when ``all_pages``."""
        query = {"per_page": PER_PAGE, **(query or {})}
        result = self.gl.http_list(
            path, query_data=query, get_all=all_pages, obey_rate_limit=False, max_retries=0
        )
        return [item for item in result if isinstance(item, dict)]

    def first(self, path: str, query: JSON, limit: int) -> builtins.list[JSON]:
        """The first ``limit`` items of a list, fetching only the pages they need."""
        pages = self.gl.http_list(
            path,
            query_data={"per_page": PER_PAGE, **query},
            iterator=True,
            obey_rate_limit=False,
            max_retries=0,
        )
        return [item for item in itertools.islice(pages, limit) if isinstance(item, dict)]

    def object(self, result: object, path: str) -> JSON:
        if not isinstance(result, dict):
            raise PermanentProviderError(f"GitLab answered {path} with a non-object")
        return result

    def get(self, path: str) -> JSON:
        return self.object(self.gl.http_get(path, obey_rate_limit=False, max_retries=0), path)

    def post(self, path: str, data: JSON) -> JSON:
        result = self.gl.http_post(path, post_data=data, obey_rate_limit=False, max_retries=0)
        return self.object(result, path)

    def put(self, path: str, data: JSON) -> JSON:
        result = self.gl.http_put(path, post_data=data, obey_rate_limit=False, max_retries=0)
        return self.object(result, path)

    def delete(self, path: str) -> None:
        self.gl.http_delete(path, obey_rate_limit=False, max_retries=0)
