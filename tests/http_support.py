"""A daemon served from a thread, for tests whose clients block (requests, urllib, CLI)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from orchestrator.app import Daemon


class ThreadedDaemon:
    """The daemon on its own event loop in a thread, so blocking clients can call it."""

    def __init__(self, build: Callable[[], Daemon]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> Daemon:
            daemon = build()
            await daemon.start()
            return daemon

        self.daemon = asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)
        self.base = f"http://127.0.0.1:{self.daemon.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
