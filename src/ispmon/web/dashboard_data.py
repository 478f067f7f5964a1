"""The dashboard's own reads, where no API route gave the data in one request: the health grid
(every active endpoint with its current status, compact) and checks by status per time bucket."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from ispmon.models import Status

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor

STEP_SECONDS = {"raw": 60, "5m": 300, "1h": 3600, "1d": 86400}
MAX_BUCKETS = 10_000


async def grid(pool: asyncpg.Pool, monitor: Monitor | None) -> list[dict[str, Any]]:
    """Every active endpoint, by id: what the grid draws. The status is the monitor's; outside the
    daemon, the newest check of the last day."""
    rows = await pool.fetch(
        "SELECT id, name, protocol, tags, criticality FROM endpoints WHERE is_active ORDER BY id"
    )
    last: dict[str, tuple[str, float | None, datetime]] = {}
    if monitor is None:
        for r in await pool.fetch(
            """SELECT DISTINCT ON (endpoint_id) endpoint_id, status, response_time_ms, checked_at
               FROM status_history WHERE checked_at > now() - interval '1 day'
               ORDER BY endpoint_id, checked_at DESC"""
        ):
            last[r["endpoint_id"]] = (r["status"], r["response_time_ms"], r["checked_at"])
    out: list[dict[str, Any]] = []
    for r in rows:
        status, rtt, at = Status.UNKNOWN.value, None, None
        if monitor is not None:
            runtime = monitor.runtimes.get(r["id"])
            if runtime is not None:
                status = runtime.state.status.value
                if runtime.last is not None:
                    at, result = runtime.last
                    rtt = result.response_time_ms
        elif r["id"] in last:
            status, rtt, at = last[r["id"]]
        out.append(
            {
                "id": r["id"],
                "name": r["name"],
                "protocol": r["protocol"],
                "tags": list(r["tags"]),
                "criticality": r["criticality"],
                "status": status,
                "response_time_ms": rtt,
                "checked_at": at.isoformat() if at is not None else None,
            }
        )
    return out


async def checks_by_status(
    pool: asyncpg.Pool,
    *,
    since: datetime,
    until: datetime,
    step: str,
    tag: str | None = None,
    protocol: str | None = None,
) -> list[dict[str, Any]]:
    """Checks per status in buckets of `step` from `since` (oldest first; empty buckets left out)."""
    where = ["h.checked_at >= $1", "h.checked_at < $2"]
    args: list[Any] = [since, until, timedelta(seconds=STEP_SECONDS[step])]
    join = ""
    if tag is not None or protocol is not None:
        join = " JOIN endpoints e ON e.id = h.endpoint_id"
        if tag is not None:
            args.append(tag)
            where.append(f"${len(args)}::text = ANY(e.tags)")
        if protocol is not None:
            args.append(protocol)
            where.append(f"e.protocol = ${len(args)}::text")
    rows = await pool.fetch(
        f"""SELECT date_bin($3::interval, h.checked_at, $1::timestamptz) AS start, h.status, count(*) AS n
            FROM status_history h{join} WHERE {' AND '.join(where)} GROUP BY 1, 2 ORDER BY 1""",
        *args,
    )
    buckets: dict[datetime, dict[str, int]] = {}
    for r in rows:
        buckets.setdefault(r["start"], {})[r["status"]] = r["n"]
    return [{"start": start.isoformat(), "counts": counts} for start, counts in buckets.items()]
