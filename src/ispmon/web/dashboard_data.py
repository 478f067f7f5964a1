"""The dashboard's own reads, where no API route gave the data in one request: the health grid
(every active endpoint with its current status, compact) and checks by status per time bucket."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from ispmon.models import Status

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor

STEP_SECONDS = {"raw": 60, "5m": 300, "1h": 3600, "1d": 86400}
MAX_BUCKETS = 10_000


def _fixed_part(row: asyncpg.Record) -> str:
    fields = (json.dumps(row[k]) for k in ("id", "name", "protocol"))
    return '{{"id":{},"name":{},"protocol":{},"tags":{},'.format(*fields, json.dumps(list(row["tags"])))


class GridCache:
    """The health grid's JSON, made cheap for thousands of endpoints: each endpoint's fixed part
    (``{"id":..,"name":..,"protocol":..,"tags":[..],``) is encoded once and kept until the
    endpoints table changes (a fingerprint of every active row's id, name, protocol and tags,
    computed by the database in one aggregate), and only the status part is encoded per request.
    For 5,000 endpoints that is one small query and 5,000 short joins instead of 5,000 dicts
    through json.dumps (bench/dashboard.py)."""

    def __init__(self) -> None:
        self._fingerprint: Any = None
        self._rows: list[tuple[str, str]] = []  # (id, fixed JSON part), by id

    async def _refresh(self, pool: asyncpg.Pool) -> None:
        fingerprint = await pool.fetchrow(
            """SELECT count(*) AS n, sum(hashtextextended(id || name || protocol || tags::text, 0)) AS h
               FROM endpoints WHERE is_active"""
        )
        key = (fingerprint["n"], fingerprint["h"])
        if key == self._fingerprint:
            return
        rows = await pool.fetch("SELECT id, name, protocol, tags FROM endpoints WHERE is_active ORDER BY id")
        self._rows = [(r["id"], _fixed_part(r)) for r in rows]
        self._fingerprint = key

    async def endpoints_json(self, pool: asyncpg.Pool, monitor: Monitor | None) -> tuple[int, str]:
        """(how many, the JSON array of every active endpoint with its status), by id. The status is
        the monitor's; outside the daemon, the newest check of the last day."""
        await self._refresh(pool)
        last: dict[str, tuple[str, float | None]] = {}
        if monitor is None:
            for r in await pool.fetch(
                """SELECT DISTINCT ON (endpoint_id) endpoint_id, status, response_time_ms
                   FROM status_history WHERE checked_at > now() - interval '1 day'
                   ORDER BY endpoint_id, checked_at DESC"""
            ):
                last[r["endpoint_id"]] = (r["status"], r["response_time_ms"])
        parts: list[str] = []
        unknown = (Status.UNKNOWN.value, None)
        for endpoint_id, fixed in self._rows:
            if monitor is not None:
                runtime = monitor.runtimes.get(endpoint_id)
                if runtime is None:
                    status, rtt = unknown
                else:
                    status = runtime.state.status.value
                    rtt = runtime.last[1].response_time_ms if runtime.last is not None else None
            else:
                status, rtt = last.get(endpoint_id, unknown)
            # Statuses are enum values (no escaping); a response time is a finite float or null.
            number = repr(float(rtt)) if rtt is not None and math.isfinite(rtt) else "null"
            parts.append(f'{fixed}"status":"{status}","response_time_ms":{number}}}')
        return len(parts), "[" + ",".join(parts) + "]"


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
