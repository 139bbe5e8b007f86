"""For tests of the daemon's HTTP edge: a daemon served from a thread (for clients that
block: requests, urllib, CLI) and the webhook-taking forges they configure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

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


def webhook_forges(secret: str) -> list[dict[str, Any]]:
    """A GitLab and a GitHub forge that nothing answers for (port 9), both taking webhooks
    signed with ``secret``: for exercising the daemon's HTTP edge."""
    return [
        {
            "kind": "gitlab",
            "name": "gitlab",
            "url": "http://127.0.0.1:9",
            "token": "glpat-testtoken0123456789",
            "projects": ["1"],
            "webhook_secret": secret,
        },
        {
            "kind": "github",
            "name": "github",
            "token": "ghp_testtoken0123456789abcdef",
            "api_url": "http://127.0.0.1:9/api/v3",
            "repos": ["acme/app"],
            "webhook_secret": secret,
        },
    ]
