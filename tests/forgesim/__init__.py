"""Forge simulators for tests: ``gitlab`` and ``github`` packages, split the same way.

See README.md in this directory for the layout, the ``/_sim`` control API, the request
classes of ``/_sim/stats`` and the fault catalogue (each fault with its public source).
"""
