"""Forge adapters (GitLab, GitHub). See :mod:`providers.base` for the seam and glossary."""
