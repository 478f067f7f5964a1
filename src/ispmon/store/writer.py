"""Batched writes with COPY, on a bounded buffer that never blocks the caller.

Probing must not wait for the database: `submit()` appends to a buffer and returns at once. A
flusher task copies the buffer into PostgreSQL by size or by timer. When the database is slow or
down, the batch being written is kept and retried with backoff; rows that arrive while the buffer is
full are dropped and counted (the count is logged and exposed), never queued without bound.

Each batch has an id (a UUID given when it is taken from the buffer, kept across its retries) that
commits in the same transaction as its rows, in `write_batches`. If the connection drops after the
server committed but before the acknowledgement arrived, the retry finds its id already there and
copies nothing: a batch is written exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Records the batch in the same transaction as its rows; nothing back means an earlier attempt
# committed it (its acknowledgement was lost) and the rows are there already.
_CLAIM = (
    "INSERT INTO write_batches (batch_id, table_name, rows) VALUES ($1, $2, $3)"
    " ON CONFLICT (batch_id) DO NOTHING RETURNING true"
)
_PRUNE = "DELETE FROM write_batches WHERE written_at < now() - interval '1 day'"
PRUNE_EVERY = 1_000  # batches between prunes of write_batches


@dataclass(slots=True)
class WriterStats:
    written: int = 0
    dropped: int = 0
    failed_flushes: int = 0
    last_error: str | None = None
    last_flush_rows: int = 0
    last_flush_ms: float = 0.0
    # Batches found already committed on a retry (their acknowledgement had been lost).
    recovered_batches: int = 0


class BatchWriter:
    """COPY rows of `columns` into `table`, batched. One instance per table."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        columns: Sequence[str],
        *,
        max_buffer: int = 100_000,
        batch_size: int = 2_000,
        flush_interval: float = 0.5,
    ) -> None:
        self.pool = pool
        self.table = table
        self.columns = tuple(columns)
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.stats = WriterStats()
        self._buf: list[tuple[Any, ...]] = []
        self._pending: list[tuple[Any, ...]] = []  # the batch being written (kept across retries)
        self._pending_id: uuid.UUID | None = None  # its id, the same on every retry
        self._batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._drop_logged_at = 0.0
        # flush() runs from the flusher task and on demand (an API check); two at once would copy
        # the same pending batch twice.
        self._flush_lock = asyncio.Lock()

    def submit(self, row: tuple[Any, ...]) -> bool:
        """Queue one row; False (and counted) when the buffer is full. Never blocks."""
        if len(self._buf) + len(self._pending) >= self.max_buffer:
            self.stats.dropped += 1
            now = time.monotonic()
            if now - self._drop_logged_at > 10:
                self._drop_logged_at = now
                log.warning("write_buffer_full", table=self.table, dropped_total=self.stats.dropped)
            return False
        self._buf.append(row)
        if len(self._buf) >= self.batch_size:
            self._wake.set()
        return True

    @property
    def backlog(self) -> int:
        return len(self._buf) + len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"writer:{self.table}")

    async def _run(self) -> None:
        backoff = 0.5
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                backoff = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.stats.failed_flushes += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "write_failed",
                    table=self.table,
                    error=self.stats.last_error,
                    backlog=self.backlog,
                    retry_in=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def flush(self) -> int:
        """Write everything buffered now; raises on database errors (the pending batch is kept)."""
        async with self._flush_lock:
            return await self._flush()

    async def _flush(self) -> int:
        total = 0
        while self._pending or self._buf:
            if not self._pending:
                self._pending, self._buf = self._buf[: self.batch_size], self._buf[self.batch_size :]
                self._pending_id = uuid.uuid4()
            started = time.perf_counter()
            n = len(self._pending)
            async with self.pool.acquire() as conn, conn.transaction():
                claimed = await conn.fetchval(_CLAIM, self._pending_id, self.table, n)
                if claimed:
                    await conn.copy_records_to_table(self.table, records=self._pending, columns=self.columns)
                if self._batches % PRUNE_EVERY == 0:
                    await conn.execute(_PRUNE)
            self._batches += 1
            if not claimed:
                self.stats.recovered_batches += 1
                log.info("write_batch_already_committed", table=self.table, rows=n, batch=str(self._pending_id))
            self._pending = []
            self._pending_id = None
            self.stats.written += n
            self.stats.last_flush_rows = n
            self.stats.last_flush_ms = (time.perf_counter() - started) * 1000
            total += n
        return total

    async def close(self, timeout: float = 10.0) -> None:
        """Stop the flusher and write what is left (bounded by `timeout`)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.error("write_lost_at_shutdown", table=self.table, rows=self.backlog, error=str(exc))
