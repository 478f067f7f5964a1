"""Reading the agents' rows for `/agents/` and for a location's status (who is live where)."""

from __future__ import annotations

from typing import Any

import asyncpg

AGENTS_SQL = """
SELECT a.id, a.location, a.version, a.host, a.pid, a.api_url, a.joined_at, a.last_heartbeat,
       a.stopped_at, a.stats,
       (a.stopped_at IS NULL AND a.last_heartbeat + make_interval(secs => $1) > now()) AS live,
       coalesce((SELECT array_agg(l.name ORDER BY l.name) FROM agent_leases l
                 WHERE l.holder = a.id AND l.expires_at > now()), '{}') AS singletons
FROM agents a ORDER BY a.location, a.id
"""


def _number(stats: dict[str, Any], key: str) -> float | None:
    value = stats.get(key)
    return float(value) if isinstance(value, int | float) else None


async def list_agents(pool: asyncpg.Pool, dead_after: float) -> list[dict[str, Any]]:
    """Every agent that ever registered, live or dead (a dead row stays, so an operator sees which
    agent went away and when; `ispmon` never deletes it by itself)."""
    out = []
    for r in await pool.fetch(AGENTS_SQL, dead_after):
        stats = r["stats"] if isinstance(r["stats"], dict) else {}
        out.append(
            {
                "id": r["id"],
                "location": r["location"],
                "version": r["version"],
                "host": r["host"],
                "pid": r["pid"],
                "api_url": r["api_url"],
                "state": "live" if r["live"] else "dead",
                "joined_at": r["joined_at"].isoformat(),
                "last_heartbeat": r["last_heartbeat"].isoformat(),
                "stopped_at": r["stopped_at"].isoformat() if r["stopped_at"] is not None else None,
                "endpoints_owned": int(stats.get("endpoints_owned") or 0) if r["live"] else 0,
                "checks_per_s": _number(stats, "checks_per_s") if r["live"] else 0.0,
                "scheduler_lag_p99_ms": _number(stats, "scheduler_lag_p99_ms"),
                "checks_shed": int(stats.get("checks_shed") or 0),
                "singletons": list(r["singletons"]),
            }
        )
    return out


async def live_locations(pool: asyncpg.Pool, dead_after: float) -> dict[str, bool]:
    """Every location an agent ever registered in -> whether one of its agents is live now."""
    rows = await pool.fetch(
        """SELECT location, bool_or(stopped_at IS NULL AND last_heartbeat + make_interval(secs => $1) > now())
                  AS live
           FROM agents GROUP BY location""",
        dead_after,
    )
    return {r["location"]: bool(r["live"]) for r in rows}
