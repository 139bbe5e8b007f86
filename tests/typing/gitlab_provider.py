"""mypy-only check (STYLE §5.2): :class:`GitLabProvider` satisfies :class:`Provider`.

Run ``mypy providers tests/typing/gitlab_provider.py``; a protocol mismatch is a type error.
"""

from __future__ import annotations

from providers.base import GitLabOptions, Provider
from providers.gitlab import GitLabProvider


def as_provider(options: GitLabOptions) -> Provider:
    """Statically an error if the adapter drifts from the protocol."""
    return GitLabProvider(options)
