"""Modules that only mypy checks: they assert the adapters satisfy the protocols."""
