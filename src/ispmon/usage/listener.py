"""The RADIUS accounting listener: our own asyncio datagram protocol around pyrad's codec.

`datagram_received` matches the NAS by source address, verifies the request authenticator and
queues the record; nothing is answered there. Records are spread over a few lanes by session
(NAS, Acct-Session-Id), each with its own committer task: a lane takes everything queued on it,
commits it in one transaction (`AccountingStore.commit`) and only then sends those Accounting-
Responses (group commit: what arrives during a transaction goes into the lane's next one). Lanes
commit in parallel, so one transaction's round trips and WAL flush overlap another's, while the
records of one session stay on one lane, in arrival order: a retransmission queues behind its
original and finds it stored. A NAS therefore never holds a response for a record a crash could
lose; if a commit fails, nothing of it is answered and the NAS retransmits. Accounting-On/Off
(which close every open session of their NAS, as of when it was received) is a barrier: it is
committed alone once everything received before it is, and nothing received after it commits
before it, so lanes give the result one committer would. Unknown NAS, bad authenticators and
malformed packets are dropped and counted, and logged at most once a minute per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import structlog

from ispmon.usage.accounting import Received
from ispmon.usage.nas import NasDirectory
from ispmon.usage.radius import (
    ACCOUNTING_OFF,
    ACCOUNTING_ON,
    BadAuthenticator,
    MalformedPacket,
    decode_request,
    response,
)

log = structlog.get_logger("ispmon.usage.listener")

LOG_EVERY = 60.0  # seconds between two log lines of the same kind of drop
MAX_PENDING = 50_000  # requests queued for the next commit before new ones are dropped (and counted)
MAX_BATCH = 5_000
RETRY_DELAY = 1.0
# Transactions in flight at once. Each holds a pool connection while it commits; a few are enough
# to overlap round trips and WAL flushes (the server does the same work either way).
LANES = 4
# A lane with fewer records than LINGER_BATCH waits LINGER seconds before its transaction when
# another one is in flight, for more to share its fixed cost; at high rates batches are larger
# than that anyway, and an idle listener never waits.
LINGER = 0.004
LINGER_BATCH = 64
# The socket's receive buffer: a commit's Python work holds the event loop for a few ms, and a
# burst arriving then must wait in the kernel, not be dropped (Linux caps it at net.core.rmem_max).
RECEIVE_BUFFER = 8 * 1024 * 1024

Commit = Callable[[Sequence[Any]], Awaitable[Any]]
Queued = tuple[Received, bytes, tuple[str, int], int]  # record, response, NAS address, epoch


@dataclass
class ListenerStats:
    received: int = 0
    answered: int = 0
    stored: int = 0
    duplicates: int = 0
    unknown_nas: int = 0
    bad_authenticator: int = 0
    malformed: int = 0
    overload: int = 0
    commit_failures: int = 0
    batches: int = 0
    _last_logged: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


_NAS_WIDE = (ACCOUNTING_ON, ACCOUNTING_OFF)


@dataclass
class _Lane:
    """Records waiting for one committer, in arrival order."""

    pending: list[Queued] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failing: bool = False


def _next_batch(lane: _Lane, open_epoch: int) -> list[Queued]:
    """The lane's next transaction: up to MAX_BATCH records, none past an Accounting-On/Off that
    is not committed yet (their epoch is beyond `open_epoch`)."""
    pending = lane.pending
    end = min(len(pending), MAX_BATCH)
    if pending[end - 1][3] > open_epoch:
        end = next(n for n in range(end) if pending[n][3] > open_epoch)
    batch, lane.pending = pending[:end], pending[end:]
    return batch


class AccountingProtocol(asyncio.DatagramProtocol):
    def __init__(
        self,
        directory: NasDirectory,
        commit: Commit,
        stats: ListenerStats | None = None,
        lanes: int = LANES,
        linger: float = LINGER,
    ) -> None:
        self.directory = directory
        self.commit = commit
        self.linger = linger
        self.stats = stats or ListenerStats()
        self.transport: asyncio.DatagramTransport | None = None
        self._lanes = [_Lane() for _ in range(max(1, lanes))]
        self._queued = 0  # over all lanes: queued and not yet answered or dropped
        self._in_flight = 0  # transactions under way
        self._closing = False
        self._idle = asyncio.Event()  # set while nothing is queued or in a transaction
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        # Accounting-On/Off barriers: records received after the n-th are of epoch n + 1, and
        # commit only once it has (`_open` is the newest epoch allowed to commit).
        self._epoch = 0
        self._open = 0
        self._outstanding: dict[int, int] = {}  # epoch -> records queued or in a transaction
        self._barriers: list[Queued] = []
        self._barrier_wake = asyncio.Event()
        self._drained = asyncio.Event()

    # -- receiving ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's UDP transports do not all subclass DatagramTransport: duck-typed.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._committer(lane), name=f"radius-acct-commit-{n}")
            for n, lane in enumerate(self._lanes)
        ]
        self._tasks.append(loop.create_task(self._barrier_committer(), name="radius-acct-commit-nas"))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if self._closing:
            return  # stopping: the NAS retransmits to the next process
        self.stats.received += 1
        host, port = addr[0], addr[1]
        nas = self.directory.match(host)
        if nas is None:
            self._drop("unknown_nas", host=host)
            return
        try:
            packet, record = decode_request(data, nas.secret)
        except BadAuthenticator:
            self._drop("bad_authenticator", host=host, nas_id=nas.id)
            return
        except MalformedPacket as exc:
            self._drop("malformed", host=host, nas_id=nas.id, reason=str(exc))
            return
        except Exception as exc:  # a codec bug must not take the listener down with it
            self._drop("malformed", host=host, nas_id=nas.id, reason=f"{type(exc).__name__}: {exc}")
            return
        if self._queued >= MAX_PENDING:
            self._drop("overload", host=host, nas_id=nas.id)
            return
        item = Received(
            nas_id=nas.id,
            source_port=port,
            identifier=data[1],
            authenticator=data[4:20],
            record=record,
            received_at=datetime.now(UTC),
        )
        self._queued += 1
        self._idle.clear()
        if record.status in _NAS_WIDE:
            self._barriers.append((item, response(packet), addr, self._epoch))
            self._epoch += 1
            self._barrier_wake.set()
            return
        # One session, one lane, so its records commit in arrival order. Python's str hash is per
        # process, which is all a lane needs (other processes are kept apart by row locks).
        lane = self._lanes[hash((nas.id, record.session_key)) % len(self._lanes)]
        lane.pending.append((item, response(packet), addr, self._epoch))
        self._outstanding[self._epoch] = self._outstanding.get(self._epoch, 0) + 1
        lane.wake.set()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a response to a NAS that went away: nothing to do.
        self._drop("send_error", error=str(exc))

    def _drop(self, kind: str, **fields: Any) -> None:
        if hasattr(self.stats, kind):
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        now = time.monotonic()
        if now - self.stats._last_logged.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self.stats._last_logged[kind] = now
            log.warning("radius_packet_dropped", kind=kind, total=getattr(self.stats, kind, None), **fields)

    # -- committing ---------------------------------------------------------------------------------
    async def _committer(self, lane: _Lane) -> None:
        while True:
            await lane.wake.wait()
            if self._in_flight and len(lane.pending) < LINGER_BATCH and self.linger > 0:
                # Group commit's fixed cost (BEGIN, two statements, COMMIT and its WAL flush: about
                # 1.7 ms of CPU on both sides together) is paid per transaction. While another
                # lane's transaction is in flight, PostgreSQL is busy anyway: wait a little for
                # more records to share ours. An idle listener commits at once.
                await asyncio.sleep(self.linger)
            lane.wake.clear()
            while lane.pending and lane.pending[0][3] <= self._open:
                batch = _next_batch(lane, self._open)
                ok = await self._commit(batch, lane)
                self._finished(batch)
                if not ok:
                    await asyncio.sleep(RETRY_DELAY)
            if self._queued == 0:
                self._idle.set()

    async def _barrier_committer(self) -> None:
        lane = _Lane()  # its own failure state
        while True:
            await self._barrier_wake.wait()
            self._barrier_wake.clear()
            while self._barriers:
                queued = self._barriers[0]
                epoch = queued[3]
                while self._outstanding.get(epoch, 0):  # what came before it is not committed yet
                    self._drained.clear()
                    await self._drained.wait()
                ok = await self._commit([queued], lane)
                # Failed or not, the records after it may go: a failed On is unanswered, and the
                # NAS's retransmission of it is a new barrier.
                self._barriers.pop(0)
                self._queued -= 1
                self._open = epoch + 1
                for other in self._lanes:
                    other.wake.set()
                if not ok:
                    await asyncio.sleep(RETRY_DELAY)
            if self._queued == 0:
                self._idle.set()

    async def _commit(self, batch: list[Queued], lane: _Lane) -> bool:
        """Commit `batch` and, once committed, answer it; False when the commit failed."""
        self._in_flight += 1
        try:
            result = await self.commit([b[0] for b in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Nothing answered: the NAS retransmits, and the retransmission is the retry.
            self.stats.commit_failures += 1
            if not lane.failing:
                log.error("radius_commit_failed", error=str(exc), records=len(batch))
            lane.failing = True
            return False
        finally:
            self._in_flight -= 1
        if lane.failing:
            log.info("radius_commit_recovered")
            lane.failing = False
        self.stats.batches += 1
        self.stats.stored += getattr(result, "stored", 0)
        self.stats.duplicates += getattr(result, "duplicates", 0)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            for _, raw, addr, _ in batch:
                transport.sendto(raw, addr)
            self.stats.answered += len(batch)
        return True

    def _finished(self, batch: list[Queued]) -> None:
        """A lane's batch is answered or given up: a barrier waiting for its epoch may go."""
        self._queued -= len(batch)
        for *_, epoch in batch:
            left = self._outstanding[epoch] - 1
            if left:
                self._outstanding[epoch] = left
            else:
                del self._outstanding[epoch]
                self._drained.set()

    async def close(self) -> None:
        """Stop receiving, commit and answer what is queued, then stop the committer."""
        self._closing = True
        # Also while a batch is in its transaction: cancelling it there would leave those unanswered.
        if not self._idle.is_set() and any(not t.done() for t in self._tasks):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.transport is not None:
            self.transport.close()


async def start_listener(
    host: str, port: int, directory: NasDirectory, commit: Commit
) -> tuple[AccountingProtocol, int]:
    """Bind the UDP socket; returns the protocol and the bound port (port 0 picks one)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: AccountingProtocol(directory, commit), local_addr=(host, port)
    )
    bound = transport.get_extra_info("sockname")[1]
    return protocol, int(bound)
