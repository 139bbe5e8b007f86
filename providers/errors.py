"""The error tree every forge adapter raises. Library errors are translated at the edge.

::

    ProviderError
     +-- TransientProviderError(retry_after)   5xx, 408/409, timeouts, connection errors
     |    +-- RateLimited(retry_after)          429, or 403 saying rate/abuse/secondary
     |    +-- DeadlineExceeded                  a call ran past its overall deadline
     |    +-- budget.BudgetShort                skipped to keep budget for urgent calls
     +-- ProviderAuthError                     401, or a failed identity check: pauses it
     +-- RunnerNotFound                        404 on a runner: it is already gone
     +-- RunnerBusy                            422 on delete of a busy runner: keep it
     +-- PermanentProviderError                anything else that retrying will not fix
     |    +-- HTTPStatusError(status)           a 4xx answer not listed above
     |    |    +-- AccessDenied                 403 (one scope refuses; not the forge)
     |    |    +-- NotFound                     404
     |    +-- UnsafeRedirect                    a redirect or Link to another host
     +-- WebhookRejected(status)               a webhook delivery we refuse (4xx)

``WebhookRejected`` sits under ``ProviderError`` because it leaves a provider; the web
layer catches it before anything else.
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


class DeadlineExceeded(TransientProviderError):
    """The forge did not finish answering within the call's overall deadline."""


class HTTPStatusError(PermanentProviderError):
    """A 4xx answer that is neither auth, rate limit nor a runner state."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class AccessDenied(HTTPStatusError):
    """403: the token may not see this project/repository (other scopes may be fine)."""


class NotFound(HTTPStatusError):
    """404: the project, repository or runner does not exist (for this token)."""


class UnsafeRedirect(PermanentProviderError):
    """The forge pointed us at another host; the token is never sent there."""


class WebhookRejected(ProviderError):
    """A webhook delivery refused with an HTTP status (always 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
