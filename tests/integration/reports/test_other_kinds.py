"""The network, usage and alerts reports over crafted rows in the real PostgreSQL: exact
figures, documented JSON, CSV round-trips, and each kind's own filter."""

from __future__ import annotations

from datetime import timedelta

from ispmon.reports import render_csv
from ispmon.reports.kinds import KINDS
from ispmon.store.database import Database
from tests.integration.api.documented import assert_documented
from tests.integration.reports.conftest import Client
from tests.integration.reports.timeline import DAY, START

PERIOD = {"since": START.isoformat(), "until": (START + DAY).isoformat()}
M5 = timedelta(minutes=5)


async def _check(client: Client, kind: str, params: dict[str, str]) -> dict[str, object]:
    resp = await client.get(f"/reports/{kind}", params={**PERIOD, **params})
    assert resp.status == 200, await resp.text()
    body = await assert_documented(client, "GET", "/reports/{kind}", resp)
    text = await (await client.get(f"/reports/{kind}", params={**PERIOD, **params, "format": "csv"})).text()
    assert render_csv.parse(KINDS[kind].columns, text) == body["rows"]
    pdf = await client.get(f"/reports/{kind}", params={**PERIOD, **params, "format": "pdf"})
    assert pdf.status == 200 and (await pdf.read()).startswith(b"%PDF")
    return body


async def test_network_p95_in_out_max_and_errors(db: Database, client: Client) -> None:
    await db.pool.execute(
        "INSERT INTO devices (id, name, address, spec) VALUES ('core-1', 'Core 1', '192.0.2.1', '{}'),"
        " ('edge-1', 'Edge 1', '192.0.2.2', '{}')"
    )
    def port(name: str) -> list[dict[str, object]]:
        return [{"key": name, "if_index": 1, "name": name, "selected": True}]

    (xe,) = await db.interfaces.upsert_discovered("core-1", port("xe-0"))
    await db.interfaces.upsert_discovered("edge-1", port("ge-0"))
    # 20 five-minute buckets: in k × 1,000 bit/s, out twice that, 0.5 errors/s in each.
    await db.pool.executemany(
        """INSERT INTO interface_rollups (step_s, interface_id, bucket, samples, seconds, in_bps_avg, out_bps_avg,
                                          in_util_pct_avg, out_util_pct_avg, in_errors_ps_avg)
           VALUES (300, $1, $2, 1, 300, $3, $4, $5, $6, 0.5)""",
        [(xe["id"], START + k * M5, (k + 1) * 1000.0, (k + 1) * 2000.0, k + 1.0, 2 * (k + 1.0)) for k in range(20)],
    )
    body = await _check(client, "network", {})
    row = body["rows"][0]
    assert (row["device_id"], row["interface"], row["step_seconds"], row["seconds"]) == ("core-1", "xe-0", 300, 6000.0)
    # Nearest rank of 20: the 19th value.
    assert (row["in_p95_bps"], row["out_p95_bps"], row["max_p95_bps"]) == (19000.0, 38000.0, 38000.0)
    assert (row["in_avg_bps"], row["in_max_bps"], row["in_errors"]) == (10500.0, 20000.0, 3000.0)
    assert body["totals"]["interfaces"] == 2 and body["totals"]["with_data"] == 1
    only = await _check(client, "network", {"device": "edge-1"})
    assert [r["interface"] for r in only["rows"]] == ["ge-0"]


async def test_usage_top_customers_sessions_and_quota(db: Database, client: Client) -> None:
    await db.pool.execute(
        """INSERT INTO customers (id, name, spec) VALUES
           ('alice', 'Alice', '{"quota_bytes": 1000}'), ('bob', 'Bob', '{}'), ('carol', 'Carol', '{}')"""
    )
    await db.pool.executemany(
        "INSERT INTO usage_rollups (customer_id, step, start, bytes_in, bytes_out) VALUES ($1, 'hour', $2, $3, $4)",
        [("alice", START, 700, 500), ("alice", START + timedelta(hours=1), 100, 0), ("bob", START, 10, 5),
         ("carol", START - DAY, 10**12, 0)],
    )  # fmt: skip
    await db.pool.execute(
        """INSERT INTO radius_sessions (nas_id, session_key, customer_id, started_at, last_at, session_time)
           VALUES ('nas', 's1', 'alice', $1, $1, 600), ('nas', 's2', 'alice', $1, $1, 60)""",
        START + timedelta(hours=2),
    )
    await db.pool.execute(
        """INSERT INTO quota_crossings (customer_id, period_start, threshold, crossed_at, used_bytes, quota_bytes)
           VALUES ('alice', $1, 80, $2, 800, 1000), ('alice', $1, 100, $2, 1200, 1000)""",
        START - 10 * DAY,
        START + timedelta(hours=1),
    )
    body = await _check(client, "usage", {"top": "2"})
    assert [(r["customer_id"], r["bytes_total"]) for r in body["rows"]] == [("alice", 1300), ("bob", 15)]
    alice = body["rows"][0]
    assert (alice["sessions"], alice["session_seconds"], alice["quota_bytes"], alice["quota_threshold_pct"]) == (
        2, 660, 1000, 100,
    )  # fmt: skip
    assert body["totals"]["over_quota"] == 1


async def test_alerts_by_rule_time_to_acknowledge_and_notifications(db: Database, client: Client) -> None:
    ids = []
    for ack in (timedelta(minutes=4), timedelta(minutes=10), None):
        ids.append(
            await db.pool.fetchval(
                """INSERT INTO alerts (endpoint_id, rule_id, kind, severity, state, title, message, started_at,
                                       acknowledged_at, resolved_at)
                   VALUES ('web', 'down', 'outage', 'critical', 'resolved', 't', 'm', $1, $2, $3) RETURNING id""",
                START + timedelta(hours=1),
                START + timedelta(hours=1) + ack if ack else None,
                START + timedelta(hours=2),
            )
        )
    await db.pool.executemany(
        "INSERT INTO notifications (idempotency_key, alert_id, event, channel, title, body, short_body, state)"
        " VALUES ($1, $2, 'opened', 'noc', 't', 'b', 's', $3)",
        [("k1", ids[0], "sent"), ("k2", ids[1], "sent"), ("k3", ids[2], "dead")],
    )
    body = await _check(client, "alerts", {})
    (row,) = body["rows"]
    assert (row["rule_id"], row["alerts"], row["acknowledged"]) == ("down", 3, 2)
    assert (row["mean_ack_seconds"], row["max_ack_seconds"], row["mean_duration_seconds"]) == (420.0, 600.0, 3600.0)
    assert (row["notifications_sent"], row["notifications_dead"]) == (2, 1)
