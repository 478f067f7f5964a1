"""Alert rows (one per outage or threshold breach seen by a rule), alert rules created through the
API, and the monitoring host's connectivity log. Writes that go with notifications take the
caller's connection, so an alert change and the notifications it causes commit together."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ispmon.store.listing import Filter, Key, ListSpec
from ispmon.store.outages import SEVERITIES

ALERT_COLUMNS = (
    "id, endpoint_id, rule_id, kind, outage_id, severity, state, title, message, details, suppressed_by,"
    " was_suppressed, started_at, notify_from, escalation_policy, last_step, last_reminder,"
    " last_notified_at, acknowledged_at, acknowledged_by, acknowledge_note, resolved_at, created_at,"
    " updated_at"
)
ALERT_STATES = ("firing", "acknowledged", "resolved")
ALERT_KINDS = ("outage", "threshold")

# GET /alerts/ and AlertRepo.list. since/until select the alerts that overlap the window, as for
# outages: still open at or after `since` and started before `until`.
ALERT_LIST = ListSpec(
    "alerts",
    f"SELECT {ALERT_COLUMNS} FROM alerts",
    filters=(
        Filter("endpoint", "text", "endpoint_id", key="endpoint_id", description="Only this endpoint id"),
        Filter("severity", "enum", "severity", choices=SEVERITIES, description="Only this severity"),
        Filter("state", "enum", "state", choices=ALERT_STATES, description="Only this state"),
        Filter("kind", "enum", "kind", choices=ALERT_KINDS, description="Only outage or threshold alerts"),
        Filter("rule", "text", "rule_id", key="rule_id", description="Only alerts of this rule"),
        Filter(
            "suppressed",
            "boolean",
            "was_suppressed",
            description="Only alerts that were (true) or were never (false) suppressed",
        ),
        Filter(
            "since",
            "date-time",
            "coalesce(resolved_at, 'infinity')",
            ">=",
            "Alerts still open at or after this instant (no offset: UTC)",
        ),
        Filter(
            "until",
            "date-time",
            "started_at",
            "<",
            "Alerts that started before this instant (no offset: UTC)",
        ),
    ),
    keyset=(Key("started_at", "date-time"), Key("id", "integer")),
    descending=True,
)
_UPDATABLE = frozenset(
    {
        "severity",
        "state",
        "title",
        "message",
        "details",
        "suppressed_by",
        "was_suppressed",
        "notify_from",
        "last_step",
        "last_reminder",
        "last_notified_at",
        "resolved_at",
        "outage_id",
    }
)


class AlertRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def open(self, conn: asyncpg.Connection, **fields: Any) -> tuple[asyncpg.Record, bool]:
        """Insert an open alert; (row, created). An alert of the same rule and endpoint that is
        still open is returned instead (created=False): the unique partial index guarantees one."""
        columns = list(fields)
        placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
        row = await conn.fetchrow(
            f"""INSERT INTO alerts ({", ".join(columns)}) VALUES ({placeholders})
                ON CONFLICT (rule_id, endpoint_id) WHERE resolved_at IS NULL DO NOTHING
                RETURNING {ALERT_COLUMNS}""",
            *fields.values(),
        )
        if row is not None:
            return row, True
        existing = await conn.fetchrow(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE rule_id = $1 AND endpoint_id = $2 AND resolved_at IS NULL",
            fields["rule_id"],
            fields["endpoint_id"],
        )
        assert existing is not None
        return existing, False

    async def update(self, conn: asyncpg.Connection | None, alert_id: int, **fields: Any) -> None:
        sets = [k for k in fields if k in _UPDATABLE]
        if not sets:
            return
        assignments = ", ".join(f"{k} = ${i + 2}" for i, k in enumerate(sets))
        target = conn if conn is not None else self.pool
        await target.execute(
            f"UPDATE alerts SET {assignments}, updated_at = now() WHERE id = $1",
            alert_id,
            *(fields[k] for k in sets),
        )

    async def acknowledge(
        self, conn: asyncpg.Connection, alert_id: int, by: str, note: str | None, at: datetime
    ) -> asyncpg.Record | None:
        """Firing -> acknowledged; None when the alert is not firing (the caller says why)."""
        return await conn.fetchrow(
            f"""UPDATE alerts SET state = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3,
                       acknowledge_note = $4, updated_at = now()
                WHERE id = $1 AND state = 'firing' RETURNING {ALERT_COLUMNS}""",
            alert_id,
            at,
            by,
            note,
        )

    async def get(self, alert_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)

    async def open_alerts(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE resolved_at IS NULL ORDER BY id"
        )

    # -- several agents: the row is the truth, each engine's memory a copy ----------------------------
    async def open_versions(self) -> dict[int, datetime]:
        """Every open alert's id and updated_at: what an engine compares its copies with."""
        rows = await self.pool.fetch("SELECT id, updated_at FROM alerts WHERE resolved_at IS NULL")
        return {r["id"]: r["updated_at"] for r in rows}

    async def down_endpoints(self) -> list[str]:
        """Endpoints with an open outage whose status is DOWN (whichever agent checks them)."""
        rows = await self.pool.fetch(
            "SELECT endpoint_id FROM outages WHERE resolved_at IS NULL AND status = 'down'"
        )
        return [r["endpoint_id"] for r in rows]

    async def open_rows(self, ids: Sequence[int]) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ANY($1::bigint[]) AND resolved_at IS NULL ORDER BY id",
            list(ids),
        )

    async def lock_open(self, conn: asyncpg.Connection, alert_id: int) -> asyncpg.Record | None:
        """The alert's row, locked until the caller's transaction ends, if it is still open: a
        write conditional on it cannot race a resolution by another agent (which waits, or ran
        first and then this answers None)."""
        return await conn.fetchrow(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND resolved_at IS NULL FOR UPDATE", alert_id
        )

    async def open_for_outage(self, outage_id: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE outage_id = $1 AND resolved_at IS NULL ORDER BY id",
            outage_id,
        )

    async def open_for_rule(self, rule_id: str, endpoint_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE rule_id = $1 AND endpoint_id = $2 AND resolved_at IS NULL",
            rule_id,
            endpoint_id,
        )

    async def list(
        self, *, limit: int = 100, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[asyncpg.Record]:
        """Newest first; `filters` by ALERT_LIST's keys (endpoint_id, severity, state, kind, rule_id,
        suppressed, since, until), `after` the (started_at, id) of the last alert seen."""
        sql, args = ALERT_LIST.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def summary(self, since: datetime) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE state = 'firing') AS firing,
                      count(*) FILTER (WHERE state = 'acknowledged') AS acknowledged,
                      count(*) FILTER (WHERE resolved_at IS NULL AND suppressed_by IS NOT NULL) AS suppressed_now,
                      count(*) FILTER (WHERE started_at >= $1) AS started,
                      count(*) FILTER (WHERE resolved_at >= $1) AS resolved,
                      avg(EXTRACT(EPOCH FROM (acknowledged_at - started_at)))
                          FILTER (WHERE acknowledged_at >= $1) AS mean_seconds_to_acknowledge
               FROM alerts WHERE resolved_at IS NULL OR resolved_at >= $1 OR started_at >= $1""",
            since,
        )
        by_severity = await self.pool.fetch(
            """SELECT severity, count(*) AS n FROM alerts
               WHERE resolved_at IS NULL OR started_at >= $1 GROUP BY severity""",
            since,
        )
        notifications = await self.pool.fetch(
            "SELECT state, count(*) AS n FROM notifications WHERE created_at >= $1 OR state = 'pending' GROUP BY state",
            since,
        )
        return {
            **dict(row),
            "by_severity": {r["severity"]: r["n"] for r in by_severity},
            "notifications": {r["state"]: r["n"] for r in notifications},
        }

    # -- connectivity log ----------------------------------------------------------------------------
    async def record_connectivity(self, at: datetime, isolated: bool, canaries: list[str]) -> None:
        await self.pool.execute(
            "INSERT INTO connectivity_events (at, isolated, canaries) VALUES ($1, $2, $3)",
            at,
            isolated,
            canaries,
        )

    async def connectivity(self, limit: int = 20) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id, at, isolated, canaries FROM connectivity_events ORDER BY at DESC, id DESC LIMIT $1",
            limit,
        )


class RuleRepo:
    """Alert rules created through the API (the config file's rules live in memory)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def all(self) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT id, spec FROM alert_rules ORDER BY id")

    async def upsert(self, rule_id: str, spec: dict[str, Any]) -> None:
        await self.pool.execute(
            """INSERT INTO alert_rules (id, spec) VALUES ($1, $2)
               ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()""",
            rule_id,
            spec,
        )

    async def delete(self, rule_id: str) -> bool:
        status: str = await self.pool.execute("DELETE FROM alert_rules WHERE id = $1", rule_id)
        return status.endswith(" 1")
