"""Raw flow keeping (FLOW_RAW_HOURS > 0; off by default): every decoded record is queued and
written in batches to `flow_records`, for troubleshooting.

Bounded: the queue holds at most `max_queued` records. If the writer falls behind (a slow or
unreachable database, a flood), what does not fit is dropped and counted, never buffered without
bound; the aggregates are unaffected (they are kept apart). A batch keeps its id until PostgreSQL
has confirmed it, so a write retried after a lost commit acknowledgement adds nothing. What is
queued when the process dies is lost (raw records are a troubleshooting aid, not the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ispmon.flows.decode import FlowRecord

log = structlog.get_logger("ispmon.flows")

FLUSH_EVERY = 2.0  # seconds between writes: raw records are wanted soon when troubleshooting
BATCH_MAX = 20_000  # records per COPY

Write = Callable[[uuid.UUID, Sequence[FlowRecord]], Awaitable[bool]]
Upkeep = Callable[[], Awaitable[Any]]


@dataclass
class RawKeeper:
    write: Write
    max_queued: int = 100_000
    upkeep: Upkeep | None = None  # partitions made and dropped (once an hour, inside the store)
    queued: deque[FlowRecord] = field(default_factory=deque)
    written: int = 0
    dropped: int = 0
    batches: int = 0
    write_failures: int = 0
    _dropping: bool = False
    _pending: tuple[uuid.UUID, list[FlowRecord]] | None = None
    _task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def offer(self, records: list[FlowRecord]) -> None:
        """Queue what fits; drop and count the rest (called in the receive path: no await)."""
        room = self.max_queued - len(self.queued)
        if room >= len(records):
            self.queued.extend(records)
            if self._dropping and room - len(records) >= self.max_queued // 2:
                self._dropping = False
                log.info("flow_raw_dropping_ended", dropped=self.dropped)
            return
        if room > 0:
            self.queued.extend(records[:room])
        self.dropped += len(records) - max(room, 0)
        if not self._dropping:
            self._dropping = True
            log.warning("flow_raw_dropping", queued=len(self.queued), max_queued=self.max_queued,
                        reason="the raw record writer is behind")  # fmt: skip

    async def flush(self, everything: bool = False) -> bool:
        """Write one batch (every batch if `everything`); False if a write failed."""
        while True:
            async with self._lock:
                if self._pending is None:
                    if not self.queued:
                        return True
                    n = min(len(self.queued), BATCH_MAX)
                    popleft = self.queued.popleft
                    self._pending = (uuid.uuid4(), [popleft() for _ in range(n)])
                batch_id, records = self._pending
                try:
                    if self.upkeep is not None:
                        await self.upkeep()
                    await self.write(batch_id, records)
                except Exception as exc:
                    self.write_failures += 1
                    if self.write_failures == 1 or self.write_failures % 60 == 0:
                        log.warning("flow_raw_write_failed", error=str(exc), failures=self.write_failures)
                    return False
                if self.write_failures:
                    log.info("flow_raw_write_recovered", failures=self.write_failures)
                    self.write_failures = 0
                self._pending = None
                self.batches += 1
                self.written += len(records)
            if not everything:
                return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="flow-raw-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush(everything=True)

    def counters(self) -> dict[str, int]:
        pending = len(self._pending[1]) if self._pending else 0
        return {"queued": len(self.queued) + pending, "written": self.written, "dropped": self.dropped}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _ in range(3):
            if await self.flush(everything=True):
                return
            await asyncio.sleep(0.5)
        log.warning("flow_raw_records_unwritten_at_close", records=self.counters()["queued"])
