"""The dashboard's event hub: coalesced, encoded once, bounded per client, never per check."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.outage_events import FalseAlarm, StatusChanged
from ispmon.models import ProbeResult, Status
from ispmon.web.hub import EventHub

SPEC = build_endpoint({"id": "web", "name": "Web", "url": "tcp://127.0.0.1:80"})
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def changed(new: Status, old: Status = Status.UP) -> StatusChanged:
    return StatusChanged(old=old, new=new, at=NOW)


def decode(message: bytes) -> tuple[str, dict[str, object]]:
    fields = dict(line.split(": ", 1) for line in message.decode().strip().split("\n"))
    return fields["event"], json.loads(fields["data"])


async def test_a_burst_of_changes_is_one_message_with_the_newest_status_per_endpoint() -> None:
    hub = EventHub()
    clients = [hub.connect() for _ in range(3)]
    hub.observe(SPEC, changed(Status.DOWN), ProbeResult(Status.DOWN, 12.5))
    hub.observe(SPEC, changed(Status.UP, Status.DOWN), ProbeResult(Status.UP, 3.0))
    hub.flush()
    assert hub.stats.published == 1
    for client in clients:
        assert client is not None and len(client.queue) == 1
        event, data = decode(client.queue[0])
        assert event == "status"
        assert data["changes"] == [
            {"id": "web", "status": "up", "old": "down", "response_time_ms": 3.0, "at": NOW.isoformat()}
        ]
    # The same bytes for every page: encoded once.
    assert len({id(c.queue[0]) for c in clients if c is not None}) == 1
    hub.flush()  # nothing new: nothing sent
    assert hub.stats.published == 1


async def test_events_other_than_state_changes_send_nothing() -> None:
    hub = EventHub()
    client = hub.connect()
    hub.observe(SPEC, FalseAlarm(at=NOW, failures=1), ProbeResult(Status.UP, 1.0))
    hub.flush()
    assert client is not None and not client.queue


async def test_a_slow_client_is_dropped_and_the_others_keep_receiving() -> None:
    hub = EventHub(queue_limit=4)
    slow, fast = hub.connect(), hub.connect()
    assert slow is not None and fast is not None
    for i in range(10):
        hub.publish("status", {"n": i})
        fast.queue.clear()  # this one reads everything
    assert slow.dropped and len(slow.queue) == 4
    assert not fast.dropped
    assert hub.stats.dropped_clients == 1
    hub.disconnect(slow)
    assert hub.stats.clients == 1


async def test_clients_are_bounded() -> None:
    hub = EventHub(max_clients=2)
    assert hub.connect() is not None and hub.connect() is not None
    assert hub.connect() is None


async def test_the_flusher_coalesces_and_wakes_clients() -> None:
    hub = EventHub(flush=0.05)
    client = hub.connect()
    assert client is not None
    hub.start()
    try:
        for status in (Status.DOWN, Status.DEGRADED, Status.DOWN):
            hub.observe(SPEC, changed(status), ProbeResult(status, None))
        await asyncio.wait_for(client.wake.wait(), 2)
        await asyncio.sleep(0.1)
        assert len(client.queue) == 1
        assert decode(client.queue[0])[1]["changes"][0]["status"] == "down"  # type: ignore[index]
    finally:
        await hub.close()
    assert client.closed
