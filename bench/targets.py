"""Benchmark targets, run in their own process (pinned to another core than ispmon).

HTTP on one port (/ok, and /delay answering after a known delay), a TCP acceptor on another.
Prints one JSON line with the ports, then serves until stdin closes or it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

DELAY_MS = 50


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def delay(_: web.Request) -> web.Response:
    await asyncio.sleep(DELAY_MS / 1000)
    return web.Response(text="ok")


async def tcp_client(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def main() -> None:
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/delay", delay)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    http_port = runner.addresses[0][1]
    tcp = await asyncio.start_server(tcp_client, "127.0.0.1", 0, backlog=4096)
    tcp_port = tcp.sockets[0].getsockname()[1]
    print(json.dumps({"http": http_port, "tcp": tcp_port, "delay_ms": DELAY_MS}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
