"""Forge simulators for tests: ``gitlab`` (and ``github``, when present). See common.py."""
