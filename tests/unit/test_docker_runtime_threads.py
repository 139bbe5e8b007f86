"""How DockerRuntime runs its blocking SDK calls: in its own threads, 8 at once.

The burst benchmark found Docker calls queueing behind each other (a semaphore of 4) and
behind forge calls (both on asyncio's default pool, 6 threads on two cores). These
scenarios hold the fix without timing anything: they wait on barriers that only open
when enough calls really run at the same time (each wait is clamped).
"""

from __future__ import annotations

import asyncio
import threading

import structlog

from orchestrator.config import DockerHostConfig
from orchestrator.runtime.docker_engine import DEFAULT_MAX_CONCURRENCY, DockerRuntime

CLAMP_S = 10.0


def runtime() -> DockerRuntime:
    # the constructor does not connect; nothing here talks to an engine
    return DockerRuntime("abc", [DockerHostConfig(name="local", url="unix:///nonexistent")])


async def test_eight_sdk_calls_run_at_once_while_the_default_pool_is_busy() -> None:
    """Fault guarded: Docker calls of a burst waiting for threads that forge calls (or
    other to_thread users) hold, or capped below the reconciler's spawn concurrency."""
    assert DEFAULT_MAX_CONCURRENCY == 8
    rt = runtime()
    release_default = threading.Event()
    loop = asyncio.get_running_loop()
    # Occupy every thread of asyncio's default pool (cpu_count + 4, at most 32).
    hogs = [loop.run_in_executor(None, release_default.wait, CLAMP_S) for _ in range(32)]
    together = threading.Barrier(DEFAULT_MAX_CONCURRENCY, timeout=CLAMP_S)
    try:
        # Each call returns only once all eight are inside an SDK call at the same time.
        results = await asyncio.gather(
            *(rt._run(together.wait) for _ in range(DEFAULT_MAX_CONCURRENCY))
        )
    finally:
        release_default.set()
        await asyncio.gather(*hogs)
        await rt.aclose()
    assert sorted(results) == list(range(DEFAULT_MAX_CONCURRENCY))


async def test_sdk_calls_carry_the_callers_log_context() -> None:
    """Fault guarded: SDK calls moved off asyncio.to_thread losing the reconcile's bound
    log context (its id on every line a failing call logs)."""
    rt = runtime()

    def bound() -> object:
        return structlog.contextvars.get_contextvars().get("reconcile")

    try:
        with structlog.contextvars.bound_contextvars(reconcile="r-42"):
            seen = await rt._run(bound)
    finally:
        await rt.aclose()
    assert seen == "r-42"
