"""Raw flow keeping (FLOW_RAW_HOURS): softflowd's records kept one by one beside the aggregates,
read back through GET /flows/records with its filters and keyset paging; a retried batch adds
nothing, a writer that falls behind drops and counts rather than grow, and expired hours are
dropped as whole partitions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ispmon.flows.decode import FlowRecord
from ispmon.flows.raw import RawKeeper
from ispmon.store.database import Database
from ispmon.store.flow_records import FlowRecordStore
from tests.integration.flows.test_softflowd import Rig, customer, export, window

# softflowd's three flows of `traffic(t0)`: (src, dst, proto, src_port, dst_port, bytes, packets)
FLOWS = {
    ("10.1.2.5", "192.0.2.9", 6, 40000, 443, 700, 5),
    ("192.0.2.9", "10.1.3.7", 17, 53, 5353, 234, 3),
    ("10.1.3.7", "10.9.0.1", 6, 50000, 22, 400, 4),
}


def keep(rig: Rig, write: Any = None, max_queued: int = 100_000) -> FlowRecordStore:
    store = FlowRecordStore(rig.db.pool)

    async def upkeep() -> None:
        await store.upkeep(1)

    rig.collector.raw = RawKeeper(write or store.write, max_queued, upkeep)
    return store


def flow(item: dict[str, Any]) -> tuple[Any, ...]:
    return (item["src_addr"], item["dst_addr"], item["proto"], item["src_port"], item["dst_port"],
            item["bytes"], item["packets"])  # fmt: skip


async def records(rig: Rig, query: str) -> list[dict[str, Any]]:
    body = await rig.documented(f"/flows/records?{query}", "/flows/records")
    return list(body["items"])


@pytest.mark.parametrize("version", [5, 9, 10])
async def test_raw_records_are_kept_and_filtered(rig: Rig, tmp_path: Path, version: int) -> None:
    keep(rig)
    t0 = time.time() // 60 * 60 - 600 + 1
    await export(rig, tmp_path, t0, version)
    assert rig.collector.raw is not None and await rig.collector.raw.flush(everything=True)
    w = window(t0)
    items = await records(rig, w)
    assert {flow(i) for i in items} == FLOWS
    assert all(i["exporter_id"] == "r1" for i in items)
    ats = [(i["at"], i["id"]) for i in items]
    assert ats == sorted(ats, reverse=True)  # newest first
    assert {flow(i)[0] for i in await records(rig, f"{w}&src=10.1.0.0/16")} == {"10.1.2.5", "10.1.3.7"}
    assert {flow(i)[1] for i in await records(rig, f"{w}&dst=10.1.3.7")} == {"10.1.3.7"}
    assert [flow(i)[2] for i in await records(rig, f"{w}&protocol=17")] == [17]
    assert [flow(i)[4] for i in await records(rig, f"{w}&port=22")] == [22]  # either side
    assert [flow(i)[3] for i in await records(rig, f"{w}&port=53")] == [53]
    assert [flow(i)[3] for i in await records(rig, f"{w}&src_port=40000")] == [40000]
    assert len(await records(rig, f"{w}&exporter=r1&dst_port=443")) == 1
    assert await records(rig, f"{w}&exporter=elsewhere") == []
    # The aggregates are as without raw keeping.
    assert await customer(rig, "c-a", t0) == (234, 400)
    stats = (await rig.documented("/flows/exporters", "/flows/exporters"))["collector"]["raw"]
    assert stats == {"queued": 0, "written": 3, "dropped": 0}


async def test_keyset_pages_walk_every_record_once(rig: Rig, tmp_path: Path) -> None:
    keep(rig)
    t0 = time.time() // 60 * 60 - 600 + 1
    for _ in range(3):
        await export(rig, tmp_path, t0, 9)
    assert rig.collector.raw is not None and await rig.collector.raw.flush(everything=True)
    seen: list[int] = []
    query = f"{window(t0)}&limit=2"
    for _ in range(10):
        body = await rig.documented(f"/flows/records?{query}", "/flows/records")
        seen.extend(i["id"] for i in body["items"])
        if body["next_after"] is None:
            break
        query = f"{window(t0)}&limit=2&after={body['next_after']}"
    assert len(seen) == 9 and len(set(seen)) == 9


async def test_a_raw_batch_retried_after_a_lost_commit_is_stored_once(rig: Rig, tmp_path: Path) -> None:
    store = FlowRecordStore(rig.db.pool)
    calls = 0

    async def commit_then_fail(batch_id: uuid.UUID, batch: Sequence[FlowRecord]) -> bool:
        nonlocal calls
        calls += 1
        written = await store.write(batch_id, batch)
        if calls == 1:
            raise ConnectionResetError("the answer to COMMIT was lost")
        return written

    keep(rig, commit_then_fail)
    t0 = time.time() // 60 * 60 - 600 + 1
    await export(rig, tmp_path, t0, 10)
    assert rig.collector.raw is not None
    assert not await rig.collector.raw.flush(everything=True)
    assert await rig.collector.raw.flush(everything=True)
    assert calls == 2
    assert {flow(i) for i in await records(rig, window(t0))} == FLOWS
    assert len(await records(rig, window(t0))) == 3


async def test_a_writer_that_falls_behind_drops_and_counts(rig: Rig, tmp_path: Path) -> None:
    store = FlowRecordStore(rig.db.pool)
    down = True

    async def write(batch_id: uuid.UUID, batch: Sequence[FlowRecord]) -> bool:
        if down:
            raise OSError("database unreachable")
        return await store.write(batch_id, batch)

    keep(rig, write, max_queued=4)
    raw = rig.collector.raw
    assert raw is not None
    t0 = time.time() // 60 * 60 - 600 + 1
    await export(rig, tmp_path, t0, 5)  # 3 records
    assert not await raw.flush()  # they are the pending batch now, kept for the retry
    await export(rig, tmp_path, t0, 5)
    await export(rig, tmp_path, t0, 5)  # 6 more: 4 fit the queue, 2 are dropped
    assert raw.counters() == {"queued": 7, "written": 0, "dropped": 2}
    assert len(raw.queued) == 4  # bounded
    down = False
    assert await raw.flush(everything=True)
    stats = (await rig.documented("/flows/exporters", "/flows/exporters"))["collector"]["raw"]
    assert stats == {"queued": 0, "written": 7, "dropped": 2}
    assert len(await records(rig, f"{window(t0)}&limit=100")) == 7
    # The aggregates lost nothing: they do not wait on the raw writer.
    assert await customer(rig, "c-a", t0) == (3 * 234, 3 * 400)


async def test_bad_record_filters_are_400_naming_the_field(rig: Rig) -> None:
    for query, field in (("src=not-an-ip", "src"), ("dst=10.0.0.0/99", "dst"), ("port=x", "port"),
                         ("protocol=-1", "protocol"), ("after=bogus", "after")):  # fmt: skip
        resp = await rig.client.get(f"/flows/records?{query}")
        assert resp.status == 400, query
        assert [e["field"] for e in (await resp.json())["errors"]] == [field]


def hour_name(at: datetime) -> str:
    return f"flow_records_{at:%Y%m%d%H}"


async def test_expired_hours_are_dropped_as_partitions(db: Database) -> None:
    store = FlowRecordStore(db.pool)
    now = datetime.now(UTC)
    await store.upkeep(6, now)
    rec = [FlowRecord("r1", (now - timedelta(hours=h)).timestamp(), 1, 2, f"10.0.0.{h}", "192.0.2.1",
                      6, 1000, 80, 100, 1) for h in (5, 1, 0)]  # fmt: skip
    assert await store.write(uuid.uuid4(), rec)
    assert await db.pool.fetchval("SELECT count(*) FROM flow_records_default") == 0
    names = {r["relname"] for r in await db.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'flow_records'")}  # fmt: skip
    assert {hour_name(now - timedelta(hours=h)) for h in range(7)} <= names
    assert hour_name(now + timedelta(hours=2)) in names  # made ahead
    dropped = await store.drop_old(2, now)
    assert hour_name(now - timedelta(hours=5)) in dropped
    assert hour_name(now - timedelta(hours=1)) not in dropped
    kept = await store.list(limit=10, since=now - timedelta(hours=7))
    assert [r["src_addr"] for r in kept] == ["10.0.0.0", "10.0.0.1"]
