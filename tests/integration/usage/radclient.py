"""Helpers for the accounting tests: Debian's radclient sending real packets, and the listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.listener import AccountingProtocol, start_listener
from ispmon.usage.nas import NasDirectory, NasSpec

SECRET = "testing123-secret"


def packet(**attrs: Any) -> str:
    return "\n".join(f"{k} = {v}" for k, v in attrs.items())


async def radclient(port: int, packets: list[str], secret: str = SECRET, *extra: str) -> tuple[int, str]:
    """Send `packets` one after another (-p 1); radclient's exit code and its output."""
    proc = await asyncio.create_subprocess_exec(
        "radclient",
        "-p",
        "1",
        "-r",
        "1",
        "-t",
        "2",
        *extra,
        f"127.0.0.1:{port}",
        "acct",
        secret,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate("\n\n".join(packets).encode() + b"\n")
    return proc.returncode or 0, out.decode(errors="replace")


@asynccontextmanager
async def listener(pool: asyncpg.Pool, commit: Any = None) -> AsyncIterator[tuple[AccountingProtocol, int]]:
    directory = NasDirectory([NasSpec(id="bras-1", name="BRAS 1", address="127.0.0.1", secret=SECRET)])
    protocol, port = await start_listener("127.0.0.1", 0, directory, commit or AccountingStore(pool).commit)
    try:
        yield protocol, port
    finally:
        await protocol.close()
