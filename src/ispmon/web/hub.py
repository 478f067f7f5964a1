"""Live updates for the dashboard: one shared hub fed by the monitor's state changes, fanned out to
every open page as Server-Sent Events (``GET /events``).

Cost does not grow with checks: the monitor calls `EventHub.observe` only for its events (a status
change, an outage declared or resolved), never per check. Changes are coalesced: every `FLUSH`
seconds the hub encodes what changed since the last flush ONCE (the newest status per endpoint) and
hands the same bytes to every client, so a burst of 5,000 changes is one message per page, and a
page costs one deque append per flush. Each client's queue is bounded (`QUEUE_LIMIT` messages): a
page that does not read (a stalled tab, a dead connection) is dropped instead of growing memory;
its browser reconnects and reloads the grid. A comment line every `HEARTBEAT` seconds keeps
proxies from closing an idle stream and finds dead connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.availability.outage_events import OutageDeclared, OutageResolved, StatusChanged

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.availability.outage_events import Event
    from ispmon.models import ProbeResult

log = structlog.get_logger("ispmon.web")

FLUSH = 0.25
HEARTBEAT = 15.0
QUEUE_LIMIT = 64
MAX_CLIENTS = 1000


@dataclass(eq=False)
class Client:
    """One open page: the encoded messages it has not written yet."""

    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False  # its queue was full: the stream ends
    closed: bool = False  # the hub is closing
    connected_at: float = field(default_factory=time.monotonic)


@dataclass
class HubStats:
    clients: int = 0
    published: int = 0  # messages encoded (one per flush with changes)
    delivered: int = 0  # messages queued to clients
    dropped_clients: int = 0


class EventHub:
    def __init__(self, *, flush: float = FLUSH, queue_limit: int = QUEUE_LIMIT, max_clients: int = MAX_CLIENTS):
        self.flush_interval = flush
        self.queue_limit = queue_limit
        self.max_clients = max_clients
        self.clients: set[Client] = set()
        self.stats = HubStats()
        self._status: dict[str, dict[str, Any]] = {}
        self._outages = False
        self._seq = 0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- input (called by the monitor) ---------------------------------------------------------------
    def observe(self, spec: EndpointSpec, event: Event, result: ProbeResult) -> None:
        if isinstance(event, StatusChanged):
            self._status[spec.id] = {
                "id": spec.id,
                "status": event.new.value,
                "old": event.old.value,
                "response_time_ms": result.response_time_ms,
                "at": event.at.isoformat(),
            }
        elif isinstance(event, OutageDeclared | OutageResolved):
            self._outages = True
        else:
            return
        self._dirty.set()

    def publish(self, event: str, data: Any) -> None:
        """Encode one message and queue it to every client (drops the clients that are full)."""
        self._seq += 1
        message = f"id: {self._seq}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        self._fan_out(message.encode("utf-8"))
        self.stats.published += 1

    def _fan_out(self, message: bytes) -> None:
        for client in self.clients:
            if len(client.queue) >= self.queue_limit:
                if not client.dropped:
                    client.dropped = True
                    self.stats.dropped_clients += 1
                    client.wake.set()
                continue
            client.queue.append(message)
            client.wake.set()
            self.stats.delivered += 1

    def flush(self) -> None:
        if self._status:
            changes, self._status = list(self._status.values()), {}
            self.publish("status", {"at": datetime.now(UTC).isoformat(), "changes": changes})
        if self._outages:
            self._outages = False
            self.publish("outages", {"at": datetime.now(UTC).isoformat()})

    # -- clients -------------------------------------------------------------------------------------
    def connect(self) -> Client | None:
        """A new client, or None when `max_clients` are connected."""
        if len(self.clients) >= self.max_clients:
            return None
        client = Client()
        self.clients.add(client)
        self.stats.clients = len(self.clients)
        return client

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)
        self.stats.clients = len(self.clients)
        if client.dropped:
            log.info("dashboard_stream_dropped", reason="slow client", queued=len(client.queue))

    # -- the flusher ---------------------------------------------------------------------------------
    async def run(self) -> None:
        last_beat = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=HEARTBEAT)
            if self._dirty.is_set():
                # Let a burst gather: one message carries every change of this interval.
                await asyncio.sleep(self.flush_interval)
                self._dirty.clear()
                self.flush()
            if time.monotonic() - last_beat >= HEARTBEAT:
                last_beat = time.monotonic()
                self._fan_out(b": heartbeat\n\n")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="dashboard_hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in list(self.clients):
            client.closed = True
            client.wake.set()
