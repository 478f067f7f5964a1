"""What the public status page shows, read from the database: public endpoints, their current
status, their daily uptime over the last 90 days (from the outages, which outlive the raw history)
and the open incidents. Only the fields an operator marked public leave this module: the public
name and group, never the id, URL, tags or error texts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from ispmon.models import Status

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor

DAYS = 90
DEFAULT_GROUP = "services"


@dataclass
class PublicEndpoint:
    name: str
    group: str
    status: Status
    # One entry per day, oldest first: the day's uptime in % or None before the endpoint existed.
    days: list[float | None] = field(default_factory=list)
    uptime: float | None = None  # over the days it existed


@dataclass
class Incident:
    name: str
    status: str  # down / degraded
    severity: str
    started_at: datetime


@dataclass
class StatusData:
    generated_at: datetime
    first_day: datetime
    endpoints: list[PublicEndpoint]
    incidents: list[Incident]


_DOWNTIME_SQL = """
SELECT o.endpoint_id, d.day,
       sum(extract(epoch FROM least(coalesce(o.resolved_at, $3), d.day + interval '1 day')
                              - greatest(o.started_at, d.day)))::float8 AS down
FROM outages o
JOIN generate_series($2::timestamptz, $3::timestamptz, interval '1 day') AS d(day)
  ON o.started_at < d.day + interval '1 day' AND coalesce(o.resolved_at, $3) > d.day
WHERE o.endpoint_id = ANY($1::text[]) AND coalesce(o.resolved_at, 'infinity') > $2
GROUP BY 1, 2
"""


async def load(pool: asyncpg.Pool, monitor: Monitor | None, now: datetime | None = None) -> StatusData:
    now = now or datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=DAYS - 1)
    rows = await pool.fetch(
        """SELECT id, name, spec->>'public_name' AS public_name, spec->>'public_group' AS public_group,
                  created_at
           FROM endpoints WHERE is_active AND spec @> '{"public": true}'"""
    )
    ids = [r["id"] for r in rows]
    down: dict[tuple[str, datetime], float] = {}
    for r in await pool.fetch(_DOWNTIME_SQL, ids, first_day, now):
        down[(r["endpoint_id"], r["day"].astimezone(UTC))] = r["down"]
    stored: dict[str, Status] = {}
    if monitor is None or monitor.agents is not None:
        # Outside the daemon (a CLI or a test app), or for what another agent checks: the newest
        # check of the last day says it.
        for r in await pool.fetch(
            """SELECT DISTINCT ON (endpoint_id) endpoint_id, status FROM status_history
               WHERE endpoint_id = ANY($1::text[]) AND checked_at > $2
               ORDER BY endpoint_id, checked_at DESC""",
            ids,
            now - timedelta(days=1),
        ):
            stored[r["endpoint_id"]] = Status(r["status"])
    endpoints: list[PublicEndpoint] = []
    names: dict[str, str] = {}
    for r in rows:
        name = r["public_name"] or r["name"]
        names[r["id"]] = name
        here = monitor is not None and monitor.checks_here(r["id"])
        status = stored.get(r["id"], Status.UNKNOWN)
        if here and monitor is not None:
            status = monitor.current_status(r["id"])
        item = PublicEndpoint(name, r["public_group"] or DEFAULT_GROUP, status)
        created = r["created_at"].astimezone(UTC)
        total_up = total = 0.0
        for i in range(DAYS):
            start = first_day + timedelta(days=i)
            end = min(start + timedelta(days=1), now)
            covered = (end - max(start, created)).total_seconds()
            if covered <= 0:
                item.days.append(None)
                continue
            lost = min(down.get((r["id"], start), 0.0), covered)
            item.days.append(100.0 * (covered - lost) / covered)
            total_up += covered - lost
            total += covered
        item.uptime = 100.0 * total_up / total if total else None
        endpoints.append(item)
    endpoints_by_row = list(endpoints)
    endpoints.sort(key=lambda e: (e.group, e.name.lower()))
    open_rows = await pool.fetch(
        """SELECT endpoint_id, status, severity, started_at FROM outages
           WHERE resolved_at IS NULL AND endpoint_id = ANY($1::text[]) ORDER BY started_at DESC""",
        ids,
    )
    incidents = [Incident(names[r["endpoint_id"]], r["status"], r["severity"], r["started_at"]) for r in open_rows]
    # With no check to go by (outside the daemon, or before the first check after a restart), an
    # open outage says what the endpoint is.
    by_id = dict(zip(ids, endpoints_by_row, strict=True))
    for r in open_rows:
        item = by_id[r["endpoint_id"]]
        if item.status is Status.UNKNOWN:
            item.status = Status(r["status"])
    return StatusData(now, first_day, endpoints, incidents)
