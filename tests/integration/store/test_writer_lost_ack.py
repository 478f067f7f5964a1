"""The results writer when PostgreSQL committed a batch but its acknowledgement never arrived.

A real proxy sits between the writer's pool and PostgreSQL and, once, cuts the connection right
after the server reported the batch committed (ReadyForQuery "idle" after the COPY's completion),
without passing that report on: the writer sees a dropped connection and retries a batch that is
already in the table. 0 duplicates and 0 lost rows are expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from ispmon.store.db import create_pool
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.writer import BatchWriter


@dataclass
class CutAfterCommit:
    """Armed, it drops the first "committed" report that follows a COPY and closes both sides."""

    armed: bool = True
    cuts: int = 0


def _upstream(dsn: str) -> tuple[str | None, int, str | None]:
    """(host or None, port, unix socket path or None) of the server in a postgresql:// URI."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "/var/run/postgresql"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    if host.startswith("/"):
        return None, port, f"{host}/.s.PGSQL.{port}"
    return host, port, None


async def _pipe_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _pipe_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: CutAfterCommit
) -> None:
    """Server to client, message by message (type byte, int32 length including itself)."""
    buf = b""
    saw_copy = False
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            buf += data
            out = b""
            while len(buf) >= 5:
                size = 1 + int.from_bytes(buf[1:5], "big")
                if len(buf) < size:
                    break
                msg, buf = buf[:size], buf[size:]
                if msg[:1] == b"C" and msg[5:9] == b"COPY":
                    saw_copy = True
                if cut.armed and saw_copy and msg[:1] == b"Z" and msg[5:6] == b"I":
                    # Committed on the server; the client never hears of it.
                    cut.armed = False
                    cut.cuts += 1
                    writer.write(out)
                    writer.transport.abort()
                    return
                out += msg
            writer.write(out)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def proxy(dsn: str, cut: CutAfterCommit) -> AsyncIterator[str]:
    """A unix-socket proxy to the server of `dsn`; yields the DSN that goes through it."""
    host, port, path = _upstream(dsn)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if path:
            s_reader, s_writer = await asyncio.open_unix_connection(path)
        else:
            s_reader, s_writer = await asyncio.open_connection(host, port)
        up = asyncio.create_task(_pipe_client(c_reader, s_writer))
        down = asyncio.create_task(_pipe_server(s_reader, c_writer, cut))
        tasks.update((up, down))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        s_writer.transport.abort()
        c_writer.transport.abort()

    with tempfile.TemporaryDirectory(prefix="ispmon-pgproxy-") as tmp:
        server = await asyncio.start_unix_server(handle, str(Path(tmp) / ".s.PGSQL.5432"))
        parts = urlsplit(dsn)
        user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        try:
            yield f"postgresql://{user}@{parts.path or '/'}?host={tmp}&port=5432"
        finally:
            server.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _rows(n: int) -> list[tuple[object, ...]]:
    base = datetime.now(UTC)
    template = dict.fromkeys(HISTORY_COLUMNS)
    rows = []
    for i in range(n):
        row = {**template, "endpoint_id": f"e{i}", "checked_at": base + timedelta(microseconds=i),
               "status": "UP", "attempts": 1}
        rows.append(tuple(row[c] for c in HISTORY_COLUMNS))
    return rows


@pytest.mark.parametrize("batches", [1, 3])
async def test_a_batch_whose_commit_ack_is_lost_is_written_once(db_dsn: str, batches: int) -> None:
    cut = CutAfterCommit()
    async with proxy(db_dsn, cut) as via:
        pool = await create_pool(via, min_size=1, max_size=2)
        writer = BatchWriter(pool, "status_history", HISTORY_COLUMNS, batch_size=100, flush_interval=0.05)
        writer.start()
        try:
            for row in _rows(100 * batches):
                assert writer.submit(row)
            for _ in range(200):
                if writer.backlog == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            await writer.close()
            await pool.close()
    assert cut.cuts == 1  # the fault happened: one batch committed with its ack lost
    conn = await asyncpg.connect(db_dsn)
    try:
        total = await conn.fetchval("SELECT count(*) FROM status_history")
        distinct = await conn.fetchval("SELECT count(DISTINCT endpoint_id) FROM status_history")
    finally:
        await conn.close()
    assert (total, distinct) == (100 * batches, 100 * batches)  # 0 duplicates, 0 lost
    assert writer.stats.failed_flushes == 1
    assert writer.stats.recovered_batches == 1
    assert writer.stats.written == 100 * batches and writer.stats.dropped == 0
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await conn.fetchval("SELECT sum(rows) FROM write_batches") == 100 * batches
    finally:
        await conn.close()
