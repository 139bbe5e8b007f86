"""The GitHub adapter: ``provider`` (demand, deliveries), ``runners`` (JIT/registration,
delete, activity), ``client`` (our session over the shared request layer; ``github.Auth``)
and ``parse`` (wire shapes). Only this package imports ``github``."""

from providers.github.parse import MalformedAnswer, endpoint_template, pending_job
from providers.github.provider import GitHubProvider
from providers.github.runners import JIT_COMMAND, JIT_ENV, REUSABLE_SCRIPT, TOKEN_ENV

__all__ = [
    "JIT_COMMAND",
    "JIT_ENV",
    "REUSABLE_SCRIPT",
    "TOKEN_ENV",
    "GitHubProvider",
    "MalformedAnswer",
    "endpoint_template",
    "pending_job",
]
