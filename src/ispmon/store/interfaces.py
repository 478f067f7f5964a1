"""Interface rows (what discovery found on each device), their last rates, and interface_metrics.

Interfaces are keyed by ``(device_id, key)`` (the ifName: see `ispmon.network.interfaces`), so a
renumbered ifIndex updates a column and the interface keeps its id and history. Samples go to
``interface_metrics`` through a `BatchWriter` (COPY) with `METRIC_COLUMNS` and `metric_row`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ispmon.network.counters import Sample
from ispmon.network.events import DEVICE_REACHABLE, DEVICE_UNREACHABLE, INTERFACE_DOWN, INTERFACE_UP, NetEvent
from ispmon.store.listing import Filter, Key, ListSpec

PollUpdate = tuple[int, str | None, str | None, dict[str, Any] | None, datetime | None]

METRIC_FIELDS = (
    "in_bps",
    "out_bps",
    "in_pps",
    "out_pps",
    "in_util_pct",
    "out_util_pct",
    "in_errors_ps",
    "out_errors_ps",
    "in_discards_ps",
    "out_discards_ps",
    "in_octets",
    "out_octets",
)
METRIC_COLUMNS = ("interface_id", "at", "interval_s", *METRIC_FIELDS)

INTERFACE_COLUMNS = (
    "id, device_id, key, if_index, name, descr, alias, if_type, speed_bps, high_speed_mbps, admin_status,"
    " oper_status, last_change, selected, present, last_sample, last_sample_at, down_since, created_at, updated_at"
)
# The discovered values, in the order of _UPSERT's unnest arrays.
DISCOVERED = (
    ("key", "text"),
    ("if_index", "integer"),
    ("name", "text"),
    ("descr", "text"),
    ("alias", "text"),
    ("if_type", "integer"),
    ("speed_bps", "bigint"),
    ("high_speed_mbps", "bigint"),
    ("admin_status", "text"),
    ("oper_status", "text"),
    ("last_change", "bigint"),
    ("selected", "boolean"),
)
# Statuses of a known interface are the poll's to change (so a change is an event), not discovery's.
_POLLED = ("key", "admin_status", "oper_status")
_TEXTS = ("name", "descr", "alias")
_UNNEST = ", ".join(f"${i + 2}::{t}[]" for i, (_, t) in enumerate(DISCOVERED))
_NAMES = ", ".join(n for n, _ in DISCOVERED)
_UPSERT = f"""
INSERT INTO interfaces (device_id, {_NAMES})
SELECT $1, * FROM unnest({_UNNEST})
ON CONFLICT (device_id, key) DO UPDATE SET
    {", ".join(f"{n} = EXCLUDED.{n}" for n, _ in DISCOVERED if n not in _POLLED)}, present = true, updated_at = now()
RETURNING {INTERFACE_COLUMNS}"""


_EVENT_SELECT = "SELECT id, device_id, interface_id, at, kind, data FROM network_events"
_EVENT_FILTERS = (
    Filter("kind", "enum", "kind", description="Only events of this kind",
           choices=(INTERFACE_DOWN, INTERFACE_UP, DEVICE_UNREACHABLE, DEVICE_REACHABLE)),
    Filter("interface_id", "integer", "interface_id", description="Only events of this interface", minimum=1),
    Filter("since", "date-time", "at", ">=", "Events at or after this instant"),
    Filter("until", "date-time", "at", "<", "Events before this instant"),
)
_EVENT_KEYS = (Key("at", "date-time"), Key("id", "integer"))
# GET /network/events and GET /devices/{device_id}/events: newest first, keyset (at, id).
NETWORK_EVENT_LIST = ListSpec(
    "network-events",
    _EVENT_SELECT,
    filters=(Filter("device", "text", "device_id", description="Only events of this device", key="device_id"),
             *_EVENT_FILTERS),
    keyset=_EVENT_KEYS,
    descending=True,
)
DEVICE_EVENT_LIST = ListSpec(
    "device-events",
    _EVENT_SELECT,
    filters=(Filter("device_id", "text", "device_id", path=True), *_EVENT_FILTERS),
    keyset=_EVENT_KEYS,
    descending=True,
)


def metric_row(interface_id: int, sample: Sample, at: datetime | None = None) -> tuple[Any, ...]:
    """The interface_metrics row of a sample (its ``at`` is Unix seconds), in METRIC_COLUMNS order;
    ``at``: the sample's time as a datetime, when the caller has it (one poll's samples share it)."""
    at = at or datetime.fromtimestamp(sample.at, UTC)
    return (interface_id, at, sample.interval, *(getattr(sample, f) for f in METRIC_FIELDS))


def sample_dict(sample: Sample, at_iso: str | None = None) -> dict[str, Any]:
    """A sample as JSON (the API's and interfaces.last_sample's shape); ``at_iso`` as for metric_row."""
    out: dict[str, Any] = {"at": at_iso or datetime.fromtimestamp(sample.at, UTC).isoformat(),
                           "interval_s": sample.interval}
    out.update({f: getattr(sample, f) for f in METRIC_FIELDS})
    return out


class InterfaceRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert_discovered(self, device_id: str, found: Sequence[dict[str, Any]]) -> list[asyncpg.Record]:
        """Create or update every discovered interface (one statement); those not found any more are
        marked ``present = false`` (kept, with their history). Returns the present rows."""
        # name/descr/alias are NOT NULL ('' when the agent has none).
        columns = [
            [item.get(name) if item.get(name) is not None or name not in _TEXTS else "" for item in found]
            for name, _ in DISCOVERED
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_UPSERT, device_id, *columns)
            await conn.execute(
                """UPDATE interfaces SET present = false, updated_at = now()
                   WHERE device_id = $1 AND present AND NOT (key = ANY($2::text[]))""",
                device_id,
                columns[0],
            )
        return rows

    async def for_device(self, device_id: str, *, present_only: bool = False) -> list[asyncpg.Record]:
        extra = " AND present" if present_only else ""
        return await self.pool.fetch(
            f"SELECT {INTERFACE_COLUMNS} FROM interfaces WHERE device_id = $1{extra} ORDER BY if_index, id",
            device_id,
        )

    async def get(self, interface_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {INTERFACE_COLUMNS} FROM interfaces WHERE id = $1", interface_id)

    async def record_poll(self, updates: Sequence[PollUpdate]) -> None:
        """After a poll: each ``(interface id, admin status, oper status, last sample or None, down_since)``."""
        if not updates:
            return
        await self.pool.execute(
            """UPDATE interfaces i SET admin_status = coalesce(u.admin, i.admin_status),
                      oper_status = coalesce(u.oper, i.oper_status),
                      last_sample = coalesce(u.sample, i.last_sample),
                      last_sample_at = CASE WHEN u.sample IS NULL THEN i.last_sample_at ELSE now() END,
                      down_since = u.down_since
               FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])
                    AS u(id, admin, oper, sample, down_since)
               WHERE i.id = u.id""",
            [u[0] for u in updates],
            [u[1] for u in updates],
            [u[2] for u in updates],
            [u[3] for u in updates],
            [u[4] for u in updates],
        )

    async def record_events(self, events: Sequence[NetEvent]) -> None:
        """State changes (interface_down / up, device_unreachable / reachable) as network_events rows."""
        if events:
            await self.pool.executemany(
                "INSERT INTO network_events (device_id, interface_id, at, kind, data) VALUES ($1, $2, $3, $4, $5)",
                [(e.device_id, e.interface_id, datetime.fromtimestamp(e.at, UTC), e.kind, e.data) for e in events],
            )

    async def list_events(
        self, spec: ListSpec, *, limit: int = 100, offset: int = 0, after: Sequence[Any] | None = None,
        **filters: Any,
    ) -> list[asyncpg.Record]:
        """Events by `spec` (NETWORK_EVENT_LIST or DEVICE_EVENT_LIST), newest first."""
        sql, args = spec.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def events(self, device_id: str, limit: int = 1000) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT device_id, interface_id, at, kind, data FROM network_events WHERE device_id = $1"
            " ORDER BY at, id LIMIT $2",
            device_id,
            limit,
        )

    async def write_metrics(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """COPY sample rows (METRIC_COLUMNS) at once; the daemon goes through a BatchWriter instead."""
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table("interface_metrics", records=list(rows), columns=METRIC_COLUMNS)

    async def metrics(
        self, interface_id: int, since: datetime, until: datetime, limit: int = 10_000
    ) -> list[asyncpg.Record]:
        """Raw samples of one interface in [since, until), oldest first."""
        return await self.pool.fetch(
            f"""SELECT at, {", ".join(METRIC_COLUMNS[2:])} FROM interface_metrics
                WHERE interface_id = $1 AND at >= $2 AND at < $3 ORDER BY at LIMIT $4""",
            interface_id,
            since,
            until,
            limit,
        )

    async def summary(self, top: int = 10) -> dict[str, Any]:
        """Counts for /network/summary, and the most utilised interfaces by their last sample."""
        counts = await self.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE d.reachable) AS devices_up,
                      count(*) FILTER (WHERE d.reachable = false) AS devices_unreachable,
                      count(*) FILTER (WHERE d.reachable IS NULL) AS devices_unknown,
                      count(*) AS devices
               FROM devices d WHERE d.is_active"""
        )
        down = await self.pool.fetch(
            """SELECT i.id, i.device_id, i.name, i.admin_status, i.oper_status FROM interfaces i
               JOIN devices d ON d.id = i.device_id
               WHERE d.is_active AND d.reachable AND i.present AND i.selected
                     AND i.admin_status = 'up' AND i.oper_status = 'down'
               ORDER BY i.device_id, i.if_index LIMIT 1000"""
        )
        busiest = await self.pool.fetch(
            """SELECT i.id, i.device_id, i.name, i.last_sample,
                      greatest((i.last_sample->>'in_util_pct')::float8, (i.last_sample->>'out_util_pct')::float8)
                          AS util
               FROM interfaces i JOIN devices d ON d.id = i.device_id
               WHERE d.is_active AND i.present AND i.last_sample IS NOT NULL
               ORDER BY util DESC NULLS LAST, i.id LIMIT $1""",
            top,
        )
        return {"counts": dict(counts), "down": down, "busiest": busiest}
