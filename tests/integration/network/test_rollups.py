"""5-minute, 1-hour and 1-day rollups of crafted interface samples in the real PostgreSQL: exact
min/avg/max/p95, re-runs that never double count, a crash between the buckets and the progress,
samples written late, the metrics route's `step`, and the percentile from the finest data kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.network.counters import Sample
from ispmon.services.context import AppServices
from ispmon.store import rollups
from ispmon.store.database import Database
from ispmon.store.interfaces import metric_row
from tests.integration.api.documented import assert_documented

Client = TestClient[web.Request, web.Application]
START = datetime(2026, 3, 2, tzinfo=UTC)
LATER = START + timedelta(days=2)


async def _interface(db: Database) -> int:
    await db.pool.execute(
        "INSERT INTO devices (id, name, address, spec) VALUES ('core-1', 'Core 1', '192.0.2.1', '{}')"
    )
    (row,) = await db.interfaces.upsert_discovered(
        "core-1", [{"key": "xe-0/0/0", "if_index": 1, "name": "xe-0/0/0", "selected": True}]
    )
    return int(row["id"])


def _sample(at: datetime, interval: float, value: float) -> Sample:
    return Sample(
        at=at.timestamp(), interval=interval, in_bps=value * 1000, out_bps=value * 2000, in_pps=value,
        out_pps=value / 2, in_util_pct=value / 10, out_util_pct=value / 5, in_errors_ps=value / 100,
        out_errors_ps=0.0, in_discards_ps=None, out_discards_ps=value, in_octets=int(value * 100), out_octets=7,
    )


async def _hour_of_samples(db: Database, iid: int, buckets: range = range(1, 13)) -> None:
    """12 five-minute buckets from START (or those of `buckets`); bucket k (1-12) holds 20 samples
    of 15 s valued k*100 + 1 ... k*100 + 20 (out of order, to show the order does not matter)."""
    rows = []
    for k in buckets:
        for j in reversed(range(20)):
            at = START + timedelta(minutes=5 * (k - 1), seconds=15 * j)
            rows.append(metric_row(iid, _sample(at, 15.0, k * 100 + j + 1)))
    await db.interfaces.write_metrics(rows)


async def _bucket(db: Database, step: int, iid: int, at: datetime) -> asyncpg.Record:
    row = await db.pool.fetchrow(
        "SELECT * FROM interface_rollups WHERE step_s = $1 AND interface_id = $2 AND bucket = $3", step, iid, at
    )
    assert row is not None
    return row


async def test_five_minute_hour_and_day_figures_are_exact(db: Database) -> None:
    iid = await _interface(db)
    await _hour_of_samples(db, iid)
    # Unequal intervals in one more bucket: the average is weighted by them (10 over 60 s, 40 over 20 s).
    await db.interfaces.write_metrics(
        [
            metric_row(iid, _sample(START + timedelta(hours=1, seconds=s), i, v))
            for s, i, v in ((0, 60, 10), (60, 20, 40))
        ]
    )
    await rollups.rollup(db.pool, now=LATER)
    first = await _bucket(db, 300, iid, START)
    assert first["samples"] == 20 and first["seconds"] == 300
    # Values 101..120: min 101, mean 110.5, nearest-rank p95 of 20 = the 19th = 119.
    assert (first["in_bps_min"], first["in_bps_avg"], first["in_bps_max"], first["in_bps_p95"]) == (
        101_000, 110_500, 120_000, 119_000
    )
    assert (first["out_bps_min"], first["out_bps_p95"]) == (202_000, 238_000)
    assert (first["in_pps_avg"], first["out_pps_max"]) == (110.5, 60.0)
    assert first["in_util_pct_p95"] == pytest.approx(11.9) and first["out_discards_ps_avg"] == 110.5
    assert first["in_errors_ps_max"] == pytest.approx(1.2) and first["out_errors_ps_max"] == 0
    assert first["in_discards_ps_avg"] is None  # no values: no figure, not 0
    assert first["in_octets"] == sum(int(v * 100) for v in range(101, 121)) and first["out_octets"] == 140
    weighted = await _bucket(db, 300, iid, START + timedelta(hours=1))
    assert weighted["in_bps_avg"] == (10_000 * 60 + 40_000 * 20) / 80 and weighted["samples"] == 2

    hour = await _bucket(db, 3600, iid, START)
    # From the 12 five-minute rows: min of minima, max of maxima, mean of the averages (k*100 + 10.5),
    # p95 of the 12 averages (nearest rank: the 12th).
    assert hour["samples"] == 240 and hour["seconds"] == 3600
    assert (hour["in_bps_min"], hour["in_bps_max"]) == (101_000, 1_220_000)
    assert hour["in_bps_avg"] == pytest.approx(sum(k * 100 + 10.5 for k in range(1, 13)) / 12 * 1000)
    assert hour["in_bps_p95"] == 1_210_500
    day = await _bucket(db, 86400, iid, START)
    assert day["samples"] == 242 and day["seconds"] == 3680
    # 13 five-minute averages: 110.5 ... 1210.5 and the weighted 17.5; nearest rank of 13 = the 13th.
    assert day["in_bps_p95"] == 1_210_500 and day["in_bps_min"] == 10_000 and day["in_bps_max"] == 1_220_000
    total = sum((k * 100 + 10.5) * 300 for k in range(1, 13)) * 1000 + 1_400_000
    assert day["in_bps_avg"] == pytest.approx(total / 3680)


async def _snapshot(db: Database) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.pool.fetch("SELECT * FROM interface_rollups ORDER BY step_s, bucket")]


async def test_rerunning_never_double_counts_and_late_samples_are_taken_in(db: Database) -> None:
    iid = await _interface(db)
    await _hour_of_samples(db, iid)
    assert await rollups.rollup(db.pool, now=START + timedelta(hours=1, minutes=3))
    before = await _snapshot(db)
    assert await rollups.rollup(db.pool, now=START + timedelta(hours=1, minutes=3)) == []
    assert await _snapshot(db) == before
    # Progress forgotten (as after restoring an old backup of it): everything is recomputed, not added.
    await db.pool.execute("DELETE FROM interface_rollup_progress")
    await rollups.rollup(db.pool, now=START + timedelta(hours=1, minutes=3))
    assert await _snapshot(db) == before
    # A sample written late into a bucket already rolled up, within the reroll window: taken in once.
    late = START + timedelta(minutes=55, seconds=1)
    await db.interfaces.write_metrics([metric_row(iid, _sample(late, 1.0, 5000))])
    await rollups.rollup(db.pool, now=START + timedelta(hours=1, minutes=8))
    await rollups.rollup(db.pool, now=START + timedelta(hours=1, minutes=8))
    bucket = await _bucket(db, 300, iid, START + timedelta(minutes=55))
    assert bucket["samples"] == 21 and bucket["in_bps_max"] == 5_000_000
    # The hour already rolled up takes it in when the next hour closes (its reroll window).
    assert (await _bucket(db, 3600, iid, START))["samples"] == 240
    await rollups.rollup(db.pool, now=START + timedelta(hours=2, minutes=3))
    assert (await _bucket(db, 3600, iid, START))["samples"] == 241
    assert (await _bucket(db, 300, iid, START + timedelta(minutes=55)))["samples"] == 21


async def test_a_crash_between_buckets_and_progress_loses_nothing(db: Database) -> None:
    iid = await _interface(db)
    await _hour_of_samples(db, iid)
    # The progress write fails after the buckets were written in the same transaction.
    await db.pool.execute(
        """CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'crash in the middle'; END $$;
           CREATE TRIGGER crash BEFORE INSERT OR UPDATE ON interface_rollup_progress
           FOR EACH ROW EXECUTE FUNCTION crash();"""
    )
    with pytest.raises(asyncpg.RaiseError):
        await rollups.rollup(db.pool, now=LATER)
    assert await db.pool.fetchval("SELECT count(*) FROM interface_rollups") == 0
    assert await db.pool.fetchval("SELECT count(*) FROM interface_rollup_progress") == 0
    await db.pool.execute("DROP TRIGGER crash ON interface_rollup_progress")
    await rollups.rollup(db.pool, now=LATER)
    first = await _bucket(db, 300, iid, START)
    assert first["samples"] == 20 and first["in_bps_avg"] == 110_500
    assert (await _bucket(db, 3600, iid, START))["samples"] == 240


async def test_retention_per_step(db: Database) -> None:
    iid = await _interface(db)
    await _hour_of_samples(db, iid)
    await rollups.rollup(db.pool, now=LATER)
    deleted = await rollups.drop_old_rollups(db.pool, {300: 2, 3600: 730, 86400: 3650}, now=START + timedelta(days=3))
    assert deleted == 12
    steps = await db.pool.fetch("SELECT step_s, count(*) AS n FROM interface_rollups GROUP BY 1 ORDER BY 1")
    assert [(r["step_s"], r["n"]) for r in steps] == [(3600, 1), (86400, 1)]


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    services = AppServices.build(db, Settings())
    client: Client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await services.network.close()


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _documented(client: Client, url: str) -> Any:
    """A 200 answer of a GET /interfaces/{id}/<route> `url`, checked against the document."""
    resp = await client.get(url)
    assert resp.status == 200, await resp.text()
    template = "/interfaces/{interface_id}/" + url.split("?")[0].rsplit("/", 1)[1]
    return await assert_documented(client, "GET", template, resp)


async def test_metrics_step_chooses_the_rollup(client: Client, db: Database) -> None:
    iid = await _interface(db)
    await _hour_of_samples(db, iid)
    await rollups.rollup(db.pool, now=LATER)
    query = "since=2026-03-02T00:00:00Z&until=2026-03-03T00:00:00Z"
    raw = await _documented(client, f"/interfaces/{iid}/metrics?{query}&limit=100000")
    assert raw["step"] == "raw" and raw["count"] == 240
    five = await _documented(client, f"/interfaces/{iid}/metrics?{query}&step=5m")
    assert five["step"] == "5m" and five["count"] == 12
    first = five["items"][0]
    assert first["at"] == "2026-03-02T00:00:00+00:00" and first["samples"] == 20
    assert (first["in_bps"], first["in_bps_min"], first["in_bps_max"], first["in_bps_p95"]) == (
        110_500, 101_000, 120_000, 119_000
    )
    hour = await _documented(client, f"/interfaces/{iid}/metrics?{query}&step=1h")
    assert hour["count"] == 1 and hour["items"][0]["in_bps_p95"] == 1_210_500
    day = await _documented(client, f"/interfaces/{iid}/metrics?{query}&step=1d")
    assert day["count"] == 1 and day["items"][0]["samples"] == 240
    bad = await _json(await client.get(f"/interfaces/{iid}/metrics?{query}&step=2m"), 400)
    assert bad["errors"][0]["field"] == "step"


async def test_percentile_uses_the_finest_data_kept(client: Client, db: Database) -> None:
    iid = await _interface(db)
    await _hour_of_samples(db, iid)
    await rollups.rollup(db.pool, now=LATER)
    query = "since=2026-03-02T00:00:00Z&until=2026-03-03T00:00:00Z"
    all_raw = await _documented(client, f"/interfaces/{iid}/percentile?{query}")
    assert all_raw["sources"] == {"raw": 12} and all_raw["in_bps"] == 1_210_500
    # Retention dropped the raw samples of the first half hour: those buckets come from the 5m rollup.
    await db.pool.execute("DELETE FROM interface_metrics WHERE at < $1", START + timedelta(minutes=30))
    mixed = await _documented(client, f"/interfaces/{iid}/percentile?{query}&percentile=50")
    assert mixed["sources"] == {"raw": 6, "5m": 6} and mixed["buckets"] == 12
    assert mixed["in_bps"] == 610_500  # nearest rank of 12: the 6th of 110.5k ... 1210.5k
    # Only the hourly rollup left for the range: one value.
    await db.pool.execute("DELETE FROM interface_metrics")
    await db.pool.execute("DELETE FROM interface_rollups WHERE step_s = 300")
    hourly = await _documented(client, f"/interfaces/{iid}/percentile?{query}")
    assert hourly["sources"] == {"1h": 1} and hourly["in_bps"] == pytest.approx(660_500)


async def test_percentile_counts_no_rollup_bucket_beside_the_raw_samples_it_holds(client: Client, db: Database) -> None:
    """A new interface's first samples start mid-hour: its hour and day buckets hold the same
    samples as the raw rows, and only the raw ones count."""
    iid = await _interface(db)
    await _hour_of_samples(db, iid, range(7, 13))  # from START + 30 min
    await rollups.rollup(db.pool, now=LATER)
    query = "since=2026-03-01T00:00:00Z&until=2026-03-03T00:00:00Z&percentile=50"
    got = await _documented(client, f"/interfaces/{iid}/percentile?{query}")
    assert got["sources"] == {"raw": 6} and got["buckets"] == 6, got
    assert got["in_bps"] == 910_500  # nearest rank of 6: the 3rd of 710.5k ... 1210.5k
    # Until is not a finer source's start: a day bucket that straddles it still counts.
    await db.pool.execute("DELETE FROM interface_metrics")
    await db.pool.execute("DELETE FROM interface_rollups WHERE step_s <> 86400")
    noon = "since=2026-03-01T00:00:00Z&until=2026-03-02T12:00:00Z"
    day = await _documented(client, f"/interfaces/{iid}/percentile?{noon}")
    assert day["sources"] == {"1d": 1}, day
