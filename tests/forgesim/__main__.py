"""``python -m tests.forgesim gitlab|github --port P --token T``: serve one simulator.

Prints one line ``forgesim <kind> listening on http://127.0.0.1:P`` once it accepts
connections, then serves until SIGTERM/SIGINT. The GitHub half is imported lazily, so
this works whether or not ``tests/forgesim/github.py`` exists in this checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys

from aiohttp import web

from tests.forgesim.common import RunningSim


def _build_app(kind: str, token: str, admin: bool) -> web.Application:
    if kind == "gitlab":
        from tests.forgesim.gitlab import create_app  # noqa: PLC0415 - one import per kind

        return create_app(token, admin=admin)
    try:
        module = importlib.import_module("tests.forgesim.github")
    except ModuleNotFoundError as exc:
        if exc.name != "tests.forgesim.github":
            raise
        sys.exit("forgesim: the github simulator (tests/forgesim/github.py) is not here")
    app: web.Application = module.create_app(token)
    return app


async def _serve(kind: str, port: int, token: str, admin: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with RunningSim(_build_app(kind, token, admin), port=port) as sim:
        print(f"forgesim {kind} listening on {sim.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.forgesim")
    parser.add_argument("kind", choices=["gitlab", "github"])
    parser.add_argument("--port", type=int, default=0, help="0 = a random free port")
    parser.add_argument("--token", required=True, help="the forge API token to accept")
    parser.add_argument("--non-admin", action="store_true", help="gitlab: token is not admin")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.kind, args.port, args.token, not args.non_admin))


if __name__ == "__main__":
    main()
