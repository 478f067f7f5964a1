"""The flow collector: datagrams from `FlowReceiver` decoded and aggregated in the event loop (nothing
awaited per packet) and the flusher that writes closed 1-minute buckets in batches.

A batch keeps its id until PostgreSQL has confirmed it: a flush retried after an error whose
commit did in fact land is recognised by that id and adds nothing. On close everything still in
memory is written once, so a restart neither loses nor doubles a closed bucket. Rows are appended
(COPY) under a random batch id and every read sums them, so collectors of several agents on one
database each add their share of a minute; each flush also shares what was learned of the
exporters with the other agents (`ispmon.flows.shared`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ispmon.flows.aggregate import Aggregator, Bucket
from ispmon.flows.decode import FlowDecoder
from ispmon.flows.raw import RawKeeper
from ispmon.flows.receiver import DEFAULT_RCVBUF, FlowReceiver
from ispmon.flows.shared import DomainShare

log = structlog.get_logger("ispmon.flows")

FLUSH_EVERY = 10.0  # seconds between flushes (FLOW_FLUSH_INTERVAL)
GRACE = 5.0  # a minute is flushed this long after it ends (late flows go into a later batch)

Write = Callable[[uuid.UUID, Sequence[Bucket]], Awaitable[bool]]
# Sees each bucket once, as it is taken for writing, and the flush's time (flow alert rules).
Watch = Callable[[Sequence[Bucket], float], None]


@dataclass
class Collector:
    decoder: FlowDecoder
    aggregator: Aggregator
    write: Write
    raw: RawKeeper | None = None  # FLOW_RAW_HOURS > 0: every record is also kept raw
    receiver: FlowReceiver | None = None
    port: int | None = None
    batches: int = 0
    write_failures: int = 0
    watch: Watch | None = None
    flush_every: float = FLUSH_EVERY
    share: DomainShare | None = None  # templates shared with the other agents (`ispmon.flows.shared`)
    _pending: tuple[uuid.UUID, list[Bucket]] | None = None
    _task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self, host: str, port: int, rcvbuf: int = DEFAULT_RCVBUF) -> int:
        self.receiver = FlowReceiver(self.received)
        self.port = self.receiver.open(host, port, rcvbuf)
        self._task = asyncio.create_task(self._run(), name="flow-flusher")
        if self.raw is not None:
            self.raw.start()
        return self.port

    def received(self, data: bytes, source: str) -> None:
        """One datagram: decoded and aggregated at once (nothing awaited per packet)."""
        records = self.decoder.decode(data, source)
        self.aggregator.add(records)
        if self.raw is not None and records:
            self.raw.offer(records)

    async def flush(self, everything: bool = False, now: float | None = None) -> bool:
        """Write the closed buckets (all of them if `everything`); False if the write failed."""
        async with self._lock:
            now = time.time() if now is None else now
            if self.share is not None:
                # Data held for want of a template that another agent learned: decoded now.
                records = await self.share.sync(now)
                if records:
                    self.aggregator.add(records)
                    if self.raw is not None:
                        self.raw.offer(records)
            self.decoder.expire(now)
            if self._pending is None:
                buckets = self.aggregator.take(None if everything else now - GRACE)
                self._watch(buckets, now)
                if not buckets:
                    return True
                self._pending = (uuid.uuid4(), buckets)
            else:
                # the failed batch is kept as it is (same id); the rest goes into the next one
                self._watch((), now)
            batch_id, buckets = self._pending
            try:
                await self.write(batch_id, buckets)
            except Exception as exc:
                self.write_failures += 1
                if self.write_failures == 1 or self.write_failures % 60 == 0:
                    log.warning("flow_flush_failed", error=str(exc), failures=self.write_failures)
                return False
            if self.write_failures:
                log.info("flow_flush_recovered", failures=self.write_failures)
                self.write_failures = 0
            self._pending = None
            self.batches += 1
        if everything and self.aggregator.buckets:
            return await self.flush(everything=True, now=now)
        return True

    def _watch(self, buckets: Sequence[Bucket], now: float) -> None:
        if self.watch is None:
            return
        try:
            self.watch(buckets, now)
        except Exception:  # alerting must never stop the aggregates being written
            log.error("flow_watch_failed", exc_info=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self.flush()

    def counters(self) -> dict[str, Any]:
        """The listener's own figures for GET /flows/exporters (the exporters' are the decoder's)."""
        out = self.receiver.counters() if self.receiver is not None else FlowReceiver.idle_counters()
        raw = self.raw.counters() if self.raw is not None else None
        shared = self.share.counters() if self.share is not None else None
        return {
            **out,
            "batches": self.batches,
            "write_failures": self.write_failures,
            "raw": raw,
            "shared": shared,
        }

    async def close(self) -> None:
        """Stop receiving, write what is in memory (a few tries), stop the flusher."""
        if self.receiver is not None:
            self.receiver.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.raw is not None:
            await self.raw.close()
        for _ in range(3):
            if await self.flush(everything=True):
                return
            await asyncio.sleep(0.5)
        log.warning("flow_buckets_unwritten_at_close", buckets=len(self.aggregator.buckets))
