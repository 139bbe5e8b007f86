"""The error tree every forge adapter raises. Library errors are translated at the edge.

::

    ProviderError
     +-- TransientProviderError(retry_after)   5xx, 429, timeouts, connection errors
     |    +-- RateLimited(retry_after)          429 / 403 with rate-limit headers
     +-- ProviderAuthError                     401/403 on a credential: pauses that forge
     +-- RunnerNotFound                        404 on a runner: it is already gone
     +-- RunnerBusy                            422 on delete of a busy runner: keep it
     +-- PermanentProviderError                anything else that retrying will not fix
    WebhookRejected(status)                    a webhook delivery we refuse (4xx)
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of everything a provider raises on purpose."""


class TransientProviderError(ProviderError):
    """Worth retrying later; ``retry_after`` (seconds) when the forge said how long."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientProviderError):
    """The forge's rate limit is spent; wait ``retry_after`` seconds."""


class ProviderAuthError(ProviderError):
    """The token is wrong, expired or lacks a scope. Retrying will not help."""


class RunnerNotFound(ProviderError):
    """The runner is not (or no longer) registered on the forge."""


class RunnerBusy(ProviderError):
    """The forge refused to delete a runner because it is running a job."""


class PermanentProviderError(ProviderError):
    """A request that will keep failing (bad scope, 404 on a project, 4xx)."""


class WebhookRejected(ProviderError):
    """A webhook delivery refused with an HTTP status (always 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
