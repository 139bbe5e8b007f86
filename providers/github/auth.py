"""How the GitHub client proves who it is: a token, or a GitHub App installation.

Both are ``requests`` auth objects (``requests.auth.AuthBase``, the public per-request
hook), set as the session's ``auth`` so every request, python-side retries included,
carries the current credential.

* :class:`TokenAuth` writes ``Authorization: token <PAT>``. It needs nothing else, so a
  daemon configured with a token never imports PyGithub (about 14 MiB of resident memory:
  its package imports all of its ~200 model classes).
* :class:`AppInstallationAuth` is what GitHub recommends for organisation-wide tooling: a
  GitHub App's private key signs a short JWT (PyGithub's ``Auth.AppAuth``, with PyJWT and
  cryptography underneath: the claims, the clock-skew back-dating and RS256 are theirs),
  the JWT buys an installation token (``POST /app/installations/{id}/access_tokens``,
  valid one hour), and that token authorises every other call. The exchange is sent
  through the same session, so it passes the same transport as every request: the same
  origin check, deadline, budget (at the priority of the call that needed it) and
  status -> error table. The token is renewed :data:`RENEW_BEFORE_S` before it expires, or
  at once after GitHub answered 401 (:meth:`AppInstallationAuth.invalidate`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from requests.auth import AuthBase

from providers.base import GitHubApp
from providers.errors import HTTPStatusError, PermanentProviderError, ProviderAuthError
from providers.wire import parse_time

if TYPE_CHECKING:
    from github.Auth import AppAuth

#: Renew an installation token this long before GitHub's ``expires_at`` (tokens live 1 h).
RENEW_BEFORE_S = 300.0


class MalformedTokenAnswer(PermanentProviderError):
    """The access-token answer had no usable ``token``/``expires_at``."""


class TokenAuth(AuthBase):
    """A personal access token (classic or fine-grained) or any other bearer token."""

    def __init__(self, token: str) -> None:
        self._value = f"token {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def invalidate(self) -> None:
        """A static token cannot be renewed; GitHub's 401 stands."""


class _Bearer(AuthBase):
    def __init__(self, value: str) -> None:
        self._value = f"Bearer {value}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request


class AppInstallationAuth(AuthBase):
    """Installation tokens of one GitHub App, fetched and renewed on demand.

    Thread-safe: the client runs calls on several worker threads, and only one of them
    fetches while the others wait for its token.
    """

    def __init__(
        self,
        app: GitHubApp,
        *,
        api_url: str,
        session: Callable[[], requests.Session],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # Imported here: only a daemon that uses an App pays for PyGithub's imports.
        from github import Auth

        self._signer: AppAuth = Auth.AppAuth(app.app_id, app.private_key)
        self._url = f"{api_url.rstrip('/')}/app/installations/{app.installation_id}/access_tokens"
        self._session = session
        self._now = now
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: datetime | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"token {self.token()}"
        return request

    def token(self) -> str:
        """The current installation token, fetched first if missing or about to expire."""
        with self._lock:
            now = self._now()
            if (
                self._token is None
                or self._expires is None
                or (self._expires - now).total_seconds() < RENEW_BEFORE_S
            ):
                self._token, self._expires = self._fetch()
            return self._token

    def invalidate(self) -> None:
        """GitHub refused the token (revoked, or the installation changed): fetch anew."""
        with self._lock:
            self._token = None
            self._expires = None

    def _fetch(self) -> tuple[str, datetime]:
        try:
            response = self._session().post(self._url, auth=_Bearer(self._signer.create_jwt()))
        except HTTPStatusError as exc:
            # 403/404/422 here mean a wrong App or installation id, or a suspended
            # installation: the credential is wrong, not one repository.
            raise ProviderAuthError(f"GitHub App installation token refused: {exc}") from exc
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise MalformedTokenAnswer("installation token answer is not JSON") from exc
        token = body.get("token") if isinstance(body, dict) else None
        expires = parse_time(body.get("expires_at")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or expires is None:
            raise MalformedTokenAnswer("installation token answer lacks token or expires_at")
        return token, expires
