"""Outage rows and the event log. Outage opens/resolves are rare and awaited (they need ids back)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ispmon.models import Severity
from ispmon.store.listing import Filter, Key, ListSpec

OUTAGE_COLUMNS = (
    "id, endpoint_id, started_at, declared_at, resolved_at, duration_seconds, status, severity, error_kind,"
    " error, failures, verified, flapping, resolution, resolution_notes, resolved_by, suppressed_by, updated_at,"
    " agent_id, location, locations"
)
EVENT_COLUMNS = ("endpoint_id", "at", "kind", "outage_id", "data")

SEVERITIES = tuple(s.value for s in Severity)

# GET /outages/ and OutageRepo.list. since/until select the outages that overlap the window: still
# open at or after `since` (an open outage is open until infinity) and started before `until`.
OUTAGE_LIST = ListSpec(
    "outages",
    f"SELECT {OUTAGE_COLUMNS} FROM outages",
    filters=(
        Filter("service", "text", "endpoint_id", key="endpoint_id", description="Only this endpoint id"),
        Filter("severity", "enum", "severity", choices=SEVERITIES, description="Only this severity"),
        Filter("active", "boolean", "resolved_at", "is null", "Only open (true) or resolved (false) outages"),
        Filter(
            "since",
            "date-time",
            "coalesce(resolved_at, 'infinity')",
            ">=",
            "Outages still open at or after this instant (no offset: UTC)",
        ),
        Filter(
            "until",
            "date-time",
            "started_at",
            "<",
            "Outages that started before this instant (no offset: UTC)",
        ),
    ),
    keyset=(Key("started_at", "date-time"), Key("id", "integer")),
    descending=True,
)

# The most UP checks a recovering run can need: Settings bounds OUTAGE_RECOVERY_THRESHOLD to 100.
RECOVERY_LOOKBACK = 100

# (kind, at, data) of an outage lifecycle event stored with the outage row it belongs to.
LifecycleEvent = tuple[str, datetime, dict[str, Any]]


async def _insert_event(
    conn: asyncpg.Connection, endpoint_id: str, outage_id: int, event: LifecycleEvent
) -> None:
    kind, at, data = event
    await conn.execute(
        "INSERT INTO endpoint_events (endpoint_id, at, kind, outage_id, data) VALUES ($1, $2, $3, $4, $5)",
        endpoint_id,
        at,
        kind,
        outage_id,
        data,
    )


class OutageRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def open(
        self,
        endpoint_id: str,
        *,
        started_at: datetime,
        declared_at: datetime,
        status: str,
        severity: str,
        error_kind: str | None,
        error: str | None,
        failures: int,
        verified: bool,
        flapping: bool = False,
        event: LifecycleEvent | None = None,
        agent_id: str | None = None,
        location: str | None = None,
        locations: list[dict[str, Any]] | None = None,
    ) -> tuple[int, bool]:
        """Open an outage; (id, created). If one is already open for the endpoint, that one is
        returned with created=False: the unique partial index makes a second open impossible.

        `event` (kind, at, data) is written in the same transaction: a crash right after cannot
        leave an outage without its "declared" record (the batched event writer could lose it)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO outages (endpoint_id, started_at, declared_at, status, severity, error_kind, error,
                                        failures, verified, flapping, agent_id, location, locations)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                   ON CONFLICT (endpoint_id) WHERE resolved_at IS NULL DO NOTHING RETURNING id""",
                endpoint_id,
                started_at,
                declared_at,
                status,
                severity,
                error_kind,
                error,
                failures,
                verified,
                flapping,
                agent_id,
                location,
                locations,
            )
            if row is not None:
                if event is not None:
                    await _insert_event(conn, endpoint_id, row["id"], event)
                return row["id"], True
            existing: int = await conn.fetchval(
                "SELECT id FROM outages WHERE endpoint_id = $1 AND resolved_at IS NULL", endpoint_id
            )
            return existing, False

    async def update(self, outage_id: int, **fields: Any) -> None:
        allowed = {"status", "severity", "flapping", "error_kind", "error", "failures", "suppressed_by"}
        sets = [k for k in fields if k in allowed]
        if not sets:
            return
        assignments = ", ".join(f"{k} = ${i + 2}" for i, k in enumerate(sets))
        await self.pool.execute(
            f"UPDATE outages SET {assignments}, updated_at = now() WHERE id = $1",
            outage_id,
            *(fields[k] for k in sets),
        )

    async def resolve(
        self,
        outage_id: int,
        *,
        resolved_at: datetime,
        resolution: str,
        notes: str | None = None,
        resolved_by: str | None = None,
        event: LifecycleEvent | None = None,
    ) -> asyncpg.Record | None:
        """Close an open outage; None when it does not exist or was already resolved. `event` is
        written in the same transaction, as for `open`."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE outages SET resolved_at = $2,
                           duration_seconds = GREATEST(0, EXTRACT(EPOCH FROM ($2 - started_at))),
                           resolution = $3, resolution_notes = $4, resolved_by = $5, updated_at = now()
                    WHERE id = $1 AND resolved_at IS NULL RETURNING {OUTAGE_COLUMNS}""",
                outage_id,
                resolved_at,
                resolution,
                notes,
                resolved_by,
            )
            if row is not None and event is not None:
                await _insert_event(conn, row["endpoint_id"], outage_id, event)
            return row

    async def get(self, outage_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {OUTAGE_COLUMNS} FROM outages WHERE id = $1", outage_id)

    async def count_open(self) -> int:
        n: int = await self.pool.fetchval("SELECT count(*) FROM outages WHERE resolved_at IS NULL")
        return n

    async def open_outages(self, endpoint_ids: Sequence[str] | None = None) -> list[asyncpg.Record]:
        """Open outages, each with the recovering run a restart would otherwise forget.

        `recovery_checks` counts the UP checks in the history since the outage's latest failing
        check, and `recovering_since` is the first of them (NULL when there are none): the outage
        ends there if the run reaches OUTAGE_RECOVERY_THRESHOLD. Muted checks count by what the
        probe saw; checks that carry no information (skipped, UNKNOWN) are passed over, as the
        state machine does. Only the newest RECOVERY_LOOKBACK informative checks are read: a run
        longer than the threshold would have resolved the outage already.
        """
        return await self.pool.fetch(
            f"""SELECT {OUTAGE_COLUMNS}, r.recovery_checks, r.recovering_since
                FROM outages o CROSS JOIN LATERAL (
                    SELECT count(*)::int AS recovery_checks, min(checked_at) AS recovering_since
                    FROM (SELECT checked_at,
                                 bool_or(seen <> 'up') OVER (ORDER BY checked_at DESC) AS interrupted
                          FROM (SELECT h.checked_at, coalesce(h.details->>'probe_status', h.status) AS seen
                                FROM status_history h
                                WHERE h.endpoint_id = o.endpoint_id AND h.checked_at >= o.started_at
                                  AND coalesce(h.details->>'probe_status', h.status) IN ('up', 'degraded', 'down')
                                ORDER BY h.checked_at DESC LIMIT $1) recent) runs
                    WHERE NOT interrupted) r
                WHERE resolved_at IS NULL AND ($2::text[] IS NULL OR o.endpoint_id = ANY($2::text[]))
                ORDER BY id""",
            RECOVERY_LOOKBACK,
            list(endpoint_ids) if endpoint_ids is not None else None,
        )

    async def list(
        self, *, limit: int = 100, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[asyncpg.Record]:
        """Newest first; `filters` by OUTAGE_LIST's keys (endpoint_id, severity, active, since, until),
        `after` the (started_at, id) of the last outage seen."""
        sql, args = OUTAGE_LIST.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def summary(self, since: datetime) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE resolved_at IS NULL) AS active,
                      count(*) FILTER (WHERE started_at >= $1) AS started,
                      count(*) FILTER (WHERE resolved_at >= $1) AS resolved,
                      avg(duration_seconds) FILTER (WHERE resolved_at >= $1) AS mean_duration_seconds,
                      max(duration_seconds) FILTER (WHERE resolved_at >= $1) AS max_duration_seconds
               FROM outages WHERE resolved_at IS NULL OR resolved_at >= $1 OR started_at >= $1""",
            since,
        )
        by_severity = await self.pool.fetch(
            """SELECT severity, count(*) AS n FROM outages
               WHERE resolved_at IS NULL OR started_at >= $1 GROUP BY severity""",
            since,
        )
        by_endpoint = await self.pool.fetch(
            """SELECT endpoint_id, count(*) AS n, sum(coalesce(duration_seconds,
                      EXTRACT(EPOCH FROM (now() - started_at))))::float8 AS downtime_seconds
               FROM outages WHERE resolved_at IS NULL OR started_at >= $1
               GROUP BY endpoint_id ORDER BY downtime_seconds DESC LIMIT 10""",
            since,
        )
        return {
            **dict(row),
            "by_severity": {r["severity"]: r["n"] for r in by_severity},
            "top_endpoints": [dict(r) for r in by_endpoint],
        }

    async def events(self, endpoint_id: str, limit: int = 100) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT id, endpoint_id, at, kind, outage_id, data FROM endpoint_events
               WHERE endpoint_id = $1 ORDER BY at DESC, id DESC LIMIT $2""",
            endpoint_id,
            limit,
        )
