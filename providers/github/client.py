"""The GitHub client: our own ``requests.Session`` over the shared request layer.

PyGithub is not used for requests: it has no public per-client transport hook (only the
process-global ``Requester.injectConnectionClasses``), its ``PaginatedList`` sends no
``If-None-Match``, its retry sleeps until the primary reset (up to an hour), and the
endpoints an autoscaler needs (repository JIT configs, registration tokens) are not
wrapped. It is used for GitHub App authentication only (:mod:`providers.github.auth`):
signing the App's JWT, imported only when an App is configured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import requests

from providers.base import GitHubOptions, RequestObserver
from providers.budget import Priority, Sleep
from providers.errors import ProviderAuthError
from providers.github.auth import AppInstallationAuth, TokenAuth
from providers.github.parse import MalformedAnswer, endpoint_template
from providers.http import forge_http
from providers.wire import header, next_link

T = TypeVar("T")

MAX_PAGES = 100  # a guard against a Link loop; GitHub caps run searches at 1,000 results
DEFAULT_CONCURRENCY = 4
SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub: with no Retry-After and budget left, wait >= 60 s


class GitHubClient:
    """Budget, rate gate and session of one GitHub (or GHES)."""

    def __init__(
        self,
        options: GitHubOptions,
        *,
        observer: RequestObserver,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.name = options.name
        self._api_url = options.api_url.rstrip("/")
        api_path = urlsplit(self._api_url).path.rstrip("/")
        self.http = forge_http(
            options,
            base_url=self._api_url,
            max_concurrency=max_concurrency,
            default_wait_s=SECONDARY_LIMIT_WAIT_S,
            rate_prefix="x-ratelimit-",
            template=lambda method, url: endpoint_template(method, url, api_path),
            observer=observer,
            clock=clock,
            sleep=sleep,
        )
        self.budget, self.gate = self.http.budget, self.http.gate
        session_headers: dict[str, str] = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "runner-orchestrator",
        }
        self.http.session.headers.update(session_headers)
        self.auth: TokenAuth | AppInstallationAuth = (
            AppInstallationAuth(options.app, api_url=self._api_url, session=self._session)
            if options.app is not None
            else TokenAuth(options.token)
        )
        self.http.session.auth = self.auth

    def _session(self) -> requests.Session:
        return self.http.session

    async def call(self, priority: Priority, fn: Callable[[], T]) -> T:
        """One blocking call (any number of requests) through the shared layer. A 401
        drops an App's installation token, so the next call fetches a fresh one."""
        try:
            return await self.http.call(priority, fn)
        except ProviderAuthError:
            self.auth.invalidate()
            raise

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self._api_url}{path}"

    def json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One request; error answers were already raised by the transport."""
        response = self.http.session.request(
            method, self.url(path), json=dict(body) if body is not None else None
        )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedAnswer(f"{self.name}: {method} {path} answered non-JSON") from exc

    def pages(self, path: str, params: Mapping[str, str]) -> Iterator[Any]:
        """Every page of a list, each fetched conditionally (page 2 can change alone).

        Sorted, identical query strings between polls: a different URL has another ETag.
        ``Link`` URLs are followed as given (``/repositories/{id}/...`` forms included);
        the transport refuses one that points to another host.
        """
        url: str | None = self.url(f"{path}?{urlencode(sorted(params.items()))}")
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self.http.session.get(url)
            try:
                yield response.json()
            except ValueError as exc:
                raise MalformedAnswer(f"{self.name}: GET {path} answered non-JSON") from exc
            url = next_link(header(response.headers, "link"))
