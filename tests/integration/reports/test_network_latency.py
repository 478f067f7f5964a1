"""The network report's latency and loss table over scripted ICMP history in the real
PostgreSQL: exact figures per endpoint and in the totals, documented JSON, the CSV of
``table=latency`` round-trips, the PDF holds the table, and the filters narrow it."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pypdf

from ispmon.reports import network_latency, render_csv
from ispmon.store.database import Database
from tests.integration.api.documented import assert_documented
from tests.integration.reports.conftest import Client
from tests.integration.reports.timeline import DAY, START

PERIOD = {"since": START.isoformat(), "until": (START + DAY).isoformat()}
H = timedelta(hours=1)


async def _script(db: Database) -> None:
    await db.pool.execute(
        """INSERT INTO endpoints (id, name, protocol, url, tags, spec) VALUES
           ('gw', 'Gateway', 'icmp', '192.0.2.9', '{core}', '{}'),
           ('far', 'Far site', 'icmp', '198.51.100.7', '{edge}', '{}'),
           ('idle', 'Idle', 'icmp', '203.0.113.5', '{edge}', '{}'),
           ('web', 'Web', 'http', 'http://127.0.0.1:1/', '{core}', '{}')"""
    )
    rows: list[tuple[str, Any, float | None, dict[str, Any]]] = [
        # gw: 10 sent, 7 replies 10 20 25 25 30 50 50 (the third check is an old row: average only).
        ("gw", START + H, 25.0, {"packets_sent": 4, "packets_received": 4, "rtts_ms": [10, 20, 30, 50]}),
        ("gw", START + 2 * H, 50.0, {"packets_sent": 4, "packets_received": 1, "rtts_ms": [50]}),
        ("gw", START + 3 * H, 25.0, {"packets_sent": 2, "packets_received": 2, "rtt_avg_ms": 25}),
        # Outside the period: not counted.
        ("gw", START + DAY, None, {"packets_sent": 100, "packets_received": 0, "rtts_ms": []}),
        ("gw", START - H, 1.0, {"packets_sent": 1, "packets_received": 1, "rtts_ms": [1]}),
        # far: 5 sent, replies 100 300 300 (a damaged element is not a reply), one check lost all.
        ("far", START + 5 * H, 233.0, {"packets_sent": 3, "packets_received": 3, "rtts_ms": [100, "x", 300, 300]}),
        ("far", START + 6 * H, None, {"packets_sent": 2, "packets_received": 0, "rtts_ms": []}),
        # A non-ICMP endpoint is not in the table.
        ("web", START + H, 12.0, {}),
    ]
    await db.pool.executemany(
        """INSERT INTO status_history (endpoint_id, checked_at, status, response_time_ms, details)
           VALUES ($1, $2, 'up', $3, $4)""",
        rows,
    )


def _lat(body: dict[str, Any]) -> dict[str, Any]:
    return body["sections"]["latency"]


async def _get(client: Client, **params: str) -> dict[str, Any]:
    resp = await client.get("/reports/network", params={**PERIOD, **params})
    assert resp.status == 200, await resp.text()
    return await assert_documented(client, "GET", "/reports/{kind}", resp)


async def test_latency_and_loss_per_icmp_endpoint_are_exact(db: Database, client: Client) -> None:
    await _script(db)
    section = _lat(await _get(client))
    assert section["title"] == "Latency and loss (ICMP)"
    assert [c["name"] for c in section["columns"]] == [c.name for c in network_latency.COLUMNS]
    far, gw, idle = section["rows"]  # most loss first; no data last
    assert far == {
        "endpoint_id": "far", "endpoint_name": "Far site", "target": "198.51.100.7", "checks": 2,
        "packets_sent": 5, "packets_received": 3, "loss_pct": 40.0, "rtt_min_ms": 100.0,
        "rtt_avg_ms": 700 / 3, "rtt_median_ms": 300.0, "rtt_p95_ms": 300.0, "rtt_max_ms": 300.0,
    }  # fmt: skip
    assert gw == {
        "endpoint_id": "gw", "endpoint_name": "Gateway", "target": "192.0.2.9", "checks": 3,
        "packets_sent": 10, "packets_received": 7, "loss_pct": 30.0, "rtt_min_ms": 10.0,
        "rtt_avg_ms": 30.0, "rtt_median_ms": 25.0, "rtt_p95_ms": 50.0, "rtt_max_ms": 50.0,
    }  # fmt: skip
    assert idle == {
        "endpoint_id": "idle", "endpoint_name": "Idle", "target": "203.0.113.5", "checks": 0,
        "packets_sent": 0, "packets_received": 0, "loss_pct": None, "rtt_min_ms": None,
        "rtt_avg_ms": None, "rtt_median_ms": None, "rtt_p95_ms": None, "rtt_max_ms": None,
    }  # fmt: skip
    assert section["totals"] == {
        "endpoints": 3, "with_data": 2, "packets_sent": 15, "packets_received": 10,
        "loss_pct": 100 * 5 / 15, "worst_p95_ms": 300.0,
    }  # fmt: skip


async def test_p95_interpolates_between_replies(db: Database, client: Client) -> None:
    # 21 replies 0..20 ms: position 20 × 0.95 = 19: exactly 19 ms.
    await db.pool.execute(
        "INSERT INTO endpoints (id, name, protocol, url, spec) VALUES ('gw', 'Gateway', 'icmp', '192.0.2.9', '{}')"
    )
    details = {"packets_sent": 21, "packets_received": 21, "rtts_ms": list(range(21))}
    await db.pool.execute(
        "INSERT INTO status_history (endpoint_id, checked_at, status, details) VALUES ('gw', $1, 'up', $2)",
        START + H,
        details,
    )
    (row,) = _lat(await _get(client))["rows"]
    assert (row["rtt_median_ms"], row["rtt_p95_ms"], row["rtt_avg_ms"], row["loss_pct"]) == (10.0, 19.0, 10.0, 0.0)


async def test_tag_and_endpoint_narrow_the_latency_table_device_the_interfaces(db: Database, client: Client) -> None:
    await _script(db)
    assert [r["endpoint_id"] for r in _lat(await _get(client, tag="edge"))["rows"]] == ["far", "idle"]
    assert [r["endpoint_id"] for r in _lat(await _get(client, endpoint="gw"))["rows"]] == ["gw"]
    # device is the interfaces' filter; it leaves the latency table whole.
    body = await _get(client, device="core-1")
    assert body["rows"] == [] and len(_lat(body)["rows"]) == 3


async def test_the_latency_csv_round_trips_and_the_default_csv_is_the_interfaces(db: Database, client: Client) -> None:
    await _script(db)
    rows = _lat(await _get(client))["rows"]
    resp = await client.get("/reports/network", params={**PERIOD, "format": "csv", "table": "latency"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert render_csv.parse(network_latency.COLUMNS, await resp.text()) == rows
    plain = await (await client.get("/reports/network", params={**PERIOD, "format": "csv"})).text()
    assert plain.splitlines()[0].startswith("device_id,device_name,interface,")


async def test_the_pdf_holds_the_latency_table(db: Database, client: Client) -> None:
    await _script(db)
    resp = await client.get("/reports/network", params={**PERIOD, "format": "pdf"})
    assert resp.status == 200
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(await resp.read())).pages)
    assert "Latency and loss (ICMP)" in text and "Most loss (%)" in text
    assert "198.51.100.7" in text and "233.333" in text  # far's target and mean RTT
    assert "33.333" in text  # the total loss, %


async def test_a_table_the_kind_has_not_is_a_400_naming_table(client: Client) -> None:
    for path, table, said in (
        ("/reports/network", "bogus", "the network report has no table 'bogus' (tables: latency)"),
        ("/reports/availability", "latency", "the availability report has no table 'latency' (tables: none)"),
    ):
        resp = await client.get(path, params={**PERIOD, "format": "csv", "table": table})
        assert resp.status == 400, await resp.text()
        (error,) = (await resp.json())["errors"]
        assert error["field"] == "table" and said in error["message"], error


async def test_the_latency_csv_is_named_by_its_table(db: Database, client: Client) -> None:
    resp = await client.get("/reports/network", params={**PERIOD, "format": "csv", "table": "latency"})
    assert resp.headers["Content-Disposition"] == 'attachment; filename="ispmon-network-latency-20260302-20260303.csv"'
