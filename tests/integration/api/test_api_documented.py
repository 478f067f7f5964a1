"""Service status, the outage and alert summaries and the latency view validate against /openapi.json.

Real answers of the live app on a real PostgreSQL, with data that fills their fields: ICMP checks of
127.0.0.1 (per-packet RTTs), an open and a resolved outage, an acknowledged alert with a
notification. (Device polls, interfaces and sessions: test_api_devices.py, test_api_usage.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ispmon.services.context import AppServices
from tests.integration.api.conftest import Client
from tests.integration.api.documented import assert_documented


async def _outage(services: AppServices, endpoint_id: str, hours_ago: float) -> int:
    started = datetime.now(UTC) - timedelta(hours=hours_ago)
    outage_id, created = await services.db.outages.open(
        endpoint_id, started_at=started, declared_at=started + timedelta(minutes=1), status="down",
        severity="major", error_kind="timeout", error="no answer within 5 s", failures=3, verified=True,
    )
    assert created
    return outage_id


async def test_status_summaries_and_latency_are_as_documented(client: Client, services: AppServices) -> None:
    ping = {"id": "core-ping", "name": "core", "url": "127.0.0.1", "protocol": "icmp", "timeout": 2, "retries": 0}
    assert (await client.post("/services/", json=ping)).status == 201
    for _ in range(3):
        check = await client.post("/services/core-ping/check")
        assert check.status == 200 and (await check.json())["status"] == "up", await check.text()
    resolved = await _outage(services, "core-ping", hours_ago=3)
    await services.db.outages.resolve(resolved, resolved_at=datetime.now(UTC) - timedelta(hours=2), resolution="auto")
    await _outage(services, "core-ping", hours_ago=1)
    now = datetime.now(UTC)
    await services.db.pool.execute(
        """INSERT INTO alerts (endpoint_id, rule_id, kind, severity, title, message, started_at, notify_from,
                               state, acknowledged_at)
           VALUES ('core-ping', 'default', 'outage', 'major', 't', 'm', $1, $1, 'acknowledged', $2)""",
        now - timedelta(minutes=10), now - timedelta(minutes=5),
    )
    await services.db.pool.execute(
        """INSERT INTO notifications (idempotency_key, event, channel, title, body, short_body, state)
           VALUES ('k1', 'declared', 'ops', 't', 'b', 's', 'sent')"""
    )

    status = await assert_documented(
        client, "GET", "/services/{endpoint_id}/status", await client.get("/services/core-ping/status")
    )
    assert status["open_outage"] is not None and status["last_check"]["status"] == "up"
    assert status["last_24h"]["uptime_percent"] == 100.0 and status["last_24h"]["p95_response_time_ms"] is not None
    outages = await assert_documented(client, "GET", "/outages/summary", await client.get("/outages/summary"))
    assert outages["active"] == 1 and outages["mean_duration_seconds"] is not None and outages["top_endpoints"]
    alerts = await assert_documented(client, "GET", "/alerts/summary", await client.get("/alerts/summary"))
    assert alerts["acknowledged"] == 1 and alerts["mean_seconds_to_acknowledge"] is not None
    assert alerts["notifications"] == {"sent": 1} and alerts["by_severity"] == {"major": 1}
    window = {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat(),
              "step": "3660"}
    latency = await assert_documented(
        client, "GET", "/network/latency/{endpoint_id}", await client.get("/network/latency/core-ping", params=window)
    )
    (step,) = latency["steps"]
    assert step["checks"] == 3 and None not in step.values() and step["loss_percent"] == 0, step
