"""Outages confirmed from several locations: each location's verdict on an endpoint, and the
decision to open or resolve the endpoint's one outage, taken in one transaction under a lock per
endpoint, so two locations deciding at once cannot open two outages or lose a resolution.

A location's verdict counts while it is current (written within two intervals: its owner
rewrites it at every check while it sees the endpoint DOWN) and while the location has a live
agent: a location whose agents are all dead is neither up nor down. The outage opens when at least
`confirm_locations` current verdicts say DOWN, and resolves when an UP verdict leaves fewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ispmon.store.outages import OUTAGE_COLUMNS
from ispmon.store.outages import _insert_event as insert_event

LifecycleEvent = tuple[str, datetime, dict[str, Any]]

_UPSERT = """
INSERT INTO endpoint_locations (endpoint_id, location, status, down_since, agent_id, checked_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (endpoint_id, location) DO UPDATE SET status = EXCLUDED.status,
    down_since = CASE WHEN EXCLUDED.status = 'down'
                      THEN coalesce(EXCLUDED.down_since, endpoint_locations.down_since, now()) END,
    agent_id = EXCLUDED.agent_id, checked_at = now()
"""

_CURRENT_DOWN = """
SELECT v.location, v.agent_id, v.down_since FROM endpoint_locations v
WHERE v.endpoint_id = $1 AND v.status = 'down' AND v.location = ANY($2::text[])
  AND v.checked_at > now() - make_interval(secs => $3)
  AND EXISTS (SELECT 1 FROM agents a WHERE a.location = v.location AND a.stopped_at IS NULL
                AND a.last_heartbeat + make_interval(secs => $4) > now())
ORDER BY v.down_since, v.location
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What this location saw, and what the decision needs."""

    endpoint_id: str
    location: str
    agent_id: str
    down: bool
    down_since: datetime | None
    interval: float
    confirm: int
    probed: tuple[str, ...]
    dead_after: float


@dataclass(frozen=True, slots=True)
class Decision:
    # "opened" (this verdict opened it), "joined" (open already, this location added),
    # "waiting" (DOWN here, not confirmed), "resolved" (this verdict closed it), "kept" (UP here,
    # others keep it open, or nothing was open).
    action: str
    outage_id: int | None
    down_locations: tuple[str, ...]
    row: asyncpg.Record | None = None


def _seen(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [
        {
            "location": r["location"],
            "agent_id": r["agent_id"],
            "down_since": r["down_since"].isoformat() if r["down_since"] is not None else None,
        }
        for r in rows
    ]


class LocationVerdicts:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def decide(
        self,
        verdict: Verdict,
        *,
        opening: dict[str, Any] | None = None,
        resolved_at: datetime | None = None,
        event: LifecycleEvent | None = None,
    ) -> Decision:
        """Record `verdict`, then open (with `opening`'s outage fields) or resolve (at
        `resolved_at`) the endpoint's outage as the current verdicts decide."""
        v = verdict
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('ispmon-endpoint:' || $1))", v.endpoint_id
            )
            await conn.execute(
                _UPSERT, v.endpoint_id, v.location, "down" if v.down else "up", v.down_since, v.agent_id
            )
            rows = await conn.fetch(
                _CURRENT_DOWN, v.endpoint_id, list(v.probed), 2 * v.interval, v.dead_after
            )
            down = tuple(r["location"] for r in rows)
            current = await conn.fetchrow(
                "SELECT id, locations FROM outages WHERE endpoint_id = $1 AND resolved_at IS NULL FOR UPDATE",
                v.endpoint_id,
            )
            if v.down:
                if current is None and len(rows) >= v.confirm and opening is not None:
                    started = min(
                        (r["down_since"] for r in rows if r["down_since"] is not None), default=None
                    )
                    outage_id = await conn.fetchval(
                        """INSERT INTO outages (endpoint_id, started_at, declared_at, status, severity, error_kind,
                                                error, failures, verified, flapping, agent_id, location, locations)
                           VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
                        v.endpoint_id,
                        started or opening["started_at"],
                        opening["status"],
                        opening["severity"],
                        opening["error_kind"],
                        opening["error"],
                        opening["failures"],
                        opening["verified"],
                        opening.get("flapping", False),
                        v.agent_id,
                        v.location,
                        _seen(rows),
                    )
                    if event is not None:
                        await _event(conn, v.endpoint_id, outage_id, event, down)
                    return Decision("opened", outage_id, down)
                if current is not None:
                    known = {x.get("location") for x in (current["locations"] or [])}
                    if not {r["location"] for r in rows} <= known:
                        merged = list(current["locations"] or []) + [
                            x for x in _seen(rows) if x["location"] not in known
                        ]
                        await conn.execute(
                            "UPDATE outages SET locations = $2, updated_at = now() WHERE id = $1",
                            current["id"],
                            merged,
                        )
                    return Decision("joined", current["id"], down)
                return Decision("waiting", None, down)
            if current is not None and len(rows) < v.confirm and resolved_at is not None:
                row = await conn.fetchrow(
                    f"""UPDATE outages SET resolved_at = $2,
                               duration_seconds = GREATEST(0, EXTRACT(EPOCH FROM ($2 - started_at))),
                               resolution = 'auto', updated_at = now()
                        WHERE id = $1 AND resolved_at IS NULL RETURNING {OUTAGE_COLUMNS}""",
                    current["id"],
                    max(
                        resolved_at,
                        await conn.fetchval("SELECT started_at FROM outages WHERE id = $1", current["id"]),
                    ),
                )
                if event is not None:
                    await _event(conn, v.endpoint_id, current["id"], event, down)
                return Decision("resolved", current["id"], down, row)
            return Decision("kept", current["id"] if current is not None else None, down)

    async def statuses(self, endpoint_id: str, dead_after: float) -> list[dict[str, Any]]:
        """Each location's view of `endpoint_id`: its newest check there, and whether the location
        has a live agent (when none, its status counts as neither up nor down)."""
        rows = await self.pool.fetch(
            """WITH locs AS (
                   SELECT location, bool_or(stopped_at IS NULL AND last_heartbeat + make_interval(secs => $2) > now())
                          AS live
                   FROM agents GROUP BY location)
               SELECT l.location, l.live, h.status, h.checked_at, h.agent_id, v.down_since
               FROM locs l
               LEFT JOIN LATERAL (SELECT status, checked_at, agent_id FROM status_history
                                  WHERE endpoint_id = $1 AND location = l.location
                                  ORDER BY checked_at DESC LIMIT 1) h ON true
               LEFT JOIN endpoint_locations v ON v.endpoint_id = $1 AND v.location = l.location
                                               AND v.status = 'down'
               ORDER BY l.location""",
            endpoint_id,
            dead_after,
        )
        return [
            {
                "location": r["location"],
                "live": bool(r["live"]),
                "status": (r["status"] or "unknown") if r["live"] else "unknown",
                "reason": None if r["live"] else "no live agent in this location: neither up nor down",
                "checked_at": r["checked_at"].isoformat() if r["checked_at"] is not None else None,
                "agent_id": r["agent_id"],
                "down_since": r["down_since"].isoformat()
                if r["down_since"] is not None and r["live"]
                else None,
            }
            for r in rows
        ]


async def _event(
    conn: asyncpg.Connection, endpoint_id: str, outage_id: int, event: LifecycleEvent, down: tuple[str, ...]
) -> None:
    kind, at, data = event
    await insert_event(conn, endpoint_id, outage_id, (kind, at, {**data, "down_locations": list(down)}))
