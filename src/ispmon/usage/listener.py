"""The RADIUS accounting listener: our own asyncio datagram protocol around pyrad's codec.

`datagram_received` matches the NAS by source address, verifies the request authenticator and
queues the record; nothing is answered there. One committer task takes everything queued, commits
it in one transaction (`AccountingStore.commit`) and only then sends all those Accounting-
Responses (group commit: what arrives during a transaction goes into the next one). A NAS
therefore never holds a response for a record a crash could lose; if the commit fails, nothing
is answered and the NAS retransmits. Unknown NAS, bad authenticators and malformed packets are
dropped and counted, and logged at most once a minute per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import structlog

from ispmon.usage.accounting import Received
from ispmon.usage.nas import NasDirectory
from ispmon.usage.radius import BadAuthenticator, MalformedPacket, decode_request, response

log = structlog.get_logger("ispmon.usage.listener")

LOG_EVERY = 60.0  # seconds between two log lines of the same kind of drop
MAX_PENDING = 50_000  # requests queued for the next commit before new ones are dropped (and counted)
MAX_BATCH = 5_000
RETRY_DELAY = 1.0

Commit = Callable[[Sequence[Any]], Awaitable[Any]]


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


class AccountingProtocol(asyncio.DatagramProtocol):
    def __init__(self, directory: NasDirectory, commit: Commit, stats: ListenerStats | None = None) -> None:
        self.directory = directory
        self.commit = commit
        self.stats = stats or ListenerStats()
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: list[tuple[Received, bytes, tuple[str, int]]] = []
        self._closing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is queued or in a transaction
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    # -- receiving ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's UDP transports do not all subclass DatagramTransport: duck-typed.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._task = asyncio.get_running_loop().create_task(self._committer(), name="radius-acct-commit")

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
        if len(self._pending) >= MAX_PENDING:
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
        self._pending.append((item, response(packet), addr))
        self._idle.clear()
        self._wake.set()

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
    async def _committer(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    result = await self.commit([b[0] for b in batch])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Nothing answered: the NAS retransmits, and the retransmission is the retry.
                    self.stats.commit_failures += 1
                    if not failing:
                        log.error("radius_commit_failed", error=str(exc), records=len(batch))
                    failing = True
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                if failing:
                    log.info("radius_commit_recovered")
                    failing = False
                self.stats.batches += 1
                self.stats.stored += getattr(result, "stored", 0)
                self.stats.duplicates += getattr(result, "duplicates", 0)
                transport = self.transport
                if transport is None or transport.is_closing():
                    return
                for _, raw, addr in batch:
                    transport.sendto(raw, addr)
                self.stats.answered += len(batch)
            self._idle.set()

    async def close(self) -> None:
        """Stop receiving, commit and answer what is queued, then stop the committer."""
        self._closing = True
        # Also while a batch is in its transaction: cancelling it there would leave those unanswered.
        if not self._idle.is_set() and self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
