#!/usr/bin/env python3
"""``runner-orchestrator run`` with timers around the calls a runner spawn makes.

Started by ``scripts/bench.py`` (its burst section, ``scripts/benchlib/burst.py``) in place
of ``python -m orchestrator run`` to break a burst down into phases; not part of the daemon.
It wraps, in this process only:

* the journal's writes (``Journal.create`` / ``transition`` / ``update``);
* each forge provider's ``pending_jobs`` and ``register_runner``;
* the runtime's ``create`` and ``start_container``, and the wait for its thread
  semaphore (``DockerRuntime._run``: time from asking to the SDK call starting);
* the docker SDK's HTTP calls (``create_container``, ``put_archive``, ``start``,
  ``inspect_container``, the network and volume look-ups), and stdin delivery's attach
  (``attach_socket``) and write (:meth:`StdinDelivery.send`) as one phase;
* the reconciler's ``_run_once`` (each reconcile) and the lifecycle's ``create`` (one
  runner: the time before its first journal write is the wait for the spawn semaphore).

Every timing is tagged with the runner being created (a context variable set around the
lifecycle's ``create``), so the bench can sum phases per runner. The records are written as JSON to
``$BENCH_PROBE_OUT`` after every reconcile. Wall-clock (``time.time``) stamps, so they
line up with the bench process's own.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_runner: contextvars.ContextVar[int] = contextvars.ContextVar("bench_runner", default=-1)
_lock = threading.Lock()
_spans: list[tuple[int, str, float, float]] = []  # (runner seq or -1, phase, start, end)
_polls: list[tuple[float, float, int]] = []  # (start, end, jobs returned)
_next = [0]


def _record(phase: str, start: float, end: float) -> None:
    with _lock:
        _spans.append((_runner.get(), phase, start, end))


def _timed_sync(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(phase, start, time.time())

    return wrapper


def _timed_async(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return await fn(*args, **kwargs)
        finally:
            _record(phase, start, time.time())

    return wrapper


def dump() -> None:
    out = os.environ.get("BENCH_PROBE_OUT")
    if not out:
        return
    with _lock:
        data = {"spans": list(_spans), "polls": list(_polls)}
    tmp = Path(out + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(out)


def _wrap_provider(provider: Any) -> None:
    register = provider.register_runner
    pending = provider.pending_jobs

    async def pending_jobs(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        jobs = await pending(*args, **kwargs)
        with _lock:
            _polls.append((start, time.time(), len(jobs)))
        return jobs

    provider.register_runner = _timed_async("forge register", register)
    provider.pending_jobs = pending_jobs


def _missing(where: str) -> None:
    """A hook point that moved: the phase is left out, the daemon runs as usual."""
    print(f"bench_probe: {where} not found, its phase is not timed", file=sys.stderr)


def install() -> None:
    import docker.api.client

    from orchestrator import lifecycle, reconciler, state
    from orchestrator.runtime import docker_create, docker_engine

    for name in ("create", "transition", "update"):
        setattr(state.Journal, name, _timed_sync("journal write", getattr(state.Journal, name)))

    api = docker.api.client.APIClient
    for method, phase in (
        ("create_container", "docker create"),
        ("put_archive", "credential put_archive"),
        ("attach_socket", "credential stdin attach+write"),
        ("start", "docker start"),
        ("inspect_container", "docker inspect"),
        ("networks", "network look-up"),
        ("inspect_volume", "volume look-up"),
    ):
        if hasattr(api, method):
            setattr(api, method, _timed_sync(phase, getattr(api, method)))
    delivery = getattr(docker_create, "StdinDelivery", None)
    if delivery is None:
        _missing("docker_create.StdinDelivery")
    else:
        delivery.send = _timed_sync("credential stdin attach+write", delivery.send)

    runtime_cls = docker_engine.DockerRuntime
    original_run = runtime_cls._run

    async def _run(self: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        asked = time.time()
        began: list[float] = []

        def inner(*a: Any, **k: Any) -> Any:
            began.append(time.time())
            return fn(*a, **k)

        try:
            return await original_run(self, inner, *args, **kwargs)
        finally:
            if began:
                _record("runtime queue (semaphore + thread hand-off)", asked, began[0])

    runtime_cls._run = _run  # type: ignore[method-assign]
    runtime_cls.create = _timed_async("runtime.create", runtime_cls.create)  # type: ignore[method-assign]
    runtime_cls.start_container = _timed_async(  # type: ignore[method-assign]
        "runtime.start_container", runtime_cls.start_container
    )

    rec_cls = reconciler.Reconciler
    original_init = rec_cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        providers = kwargs.get("providers", {})
        for provider in providers.values():
            _wrap_provider(provider)

    rec_cls.__init__ = __init__  # type: ignore[method-assign]
    if hasattr(rec_cls, "_run_once"):
        original_run_once = rec_cls._run_once

        async def _run_once(self: Any) -> Any:
            start = time.time()
            try:
                return await original_run_once(self)
            finally:
                _record("reconcile", start, time.time())
                dump()

        rec_cls._run_once = _run_once  # type: ignore[method-assign]
    else:
        _missing("Reconciler._run_once")

    # one runner's spawn: the lifecycle's create (the reconciler's own before the split)
    owner = getattr(lifecycle, "RunnerLifecycle", None)
    if owner is None or not hasattr(owner, "create"):
        _missing("RunnerLifecycle.create")
        return
    original_create = owner.create

    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            seq = _next[0]
            _next[0] += 1
        _runner.set(seq)
        start = time.time()
        try:
            return await original_create(self, *args, **kwargs)
        finally:
            _record("spawn total", start, time.time())

    owner.create = create  # type: ignore[method-assign]


def main() -> int:
    install()
    from orchestrator.cli import main as cli_main

    try:
        return cli_main(["run"])
    finally:
        dump()


if __name__ == "__main__":
    raise SystemExit(main())
