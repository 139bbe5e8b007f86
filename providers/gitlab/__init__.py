"""The GitLab adapter: ``provider`` (demand, webhooks), ``runners`` (registration,
retirement, activity), ``client`` (python-gitlab over the shared request layer) and
``parse`` (wire shapes). Only this package imports ``gitlab``."""

from providers.gitlab.client import DEFAULT_RETRY_AFTER_S, MAX_CONCURRENT_CALLS, PER_PAGE
from providers.gitlab.parse import endpoint_template, job_from_graphql, job_from_rest
from providers.gitlab.provider import GitLabProvider

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "MAX_CONCURRENT_CALLS",
    "PER_PAGE",
    "GitLabProvider",
    "endpoint_template",
    "job_from_graphql",
    "job_from_rest",
]
