"""The `agent_leases` rows: take or renew in one statement, release, and who holds what.

All times are the database's (now()), so agents on hosts with skewed clocks agree on expiry. A
lease is free when its `expires_at` is not in the future: a clean release sets it to now().
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

# One statement, so two contenders cannot both win: the row is locked by the first, and the
# second's ON CONFLICT re-evaluates the WHERE on the row the first wrote (valid now: no update,
# no row returned). Renewing the same tenure (our holder and epoch, not expired) keeps its epoch
# and acquired_at; anything else is a new tenure and the epoch grows. Epoch -1 reclaims a lease
# our agent id holds under any epoch: a restarted agent (kill -9, then systemd) takes its own
# lease back at once instead of waiting out the TTL; an agent id names one process.
_TAKE_OR_RENEW = """
INSERT INTO agent_leases AS l (name, holder, epoch, acquired_at, expires_at)
VALUES ($1, $2, 1, now(), now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = $4 AND l.expires_at > now()
                 THEN l.epoch ELSE l.epoch + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = $4 AND l.expires_at > now()
                       THEN l.acquired_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE (l.holder = EXCLUDED.holder AND (l.epoch = $4 OR $4 < 0)) OR l.expires_at <= now()
RETURNING epoch
"""


async def take_or_renew(
    conn: asyncpg.Pool | asyncpg.Connection, name: str, holder: str, ttl: float, epoch: int | None
) -> int | None:
    """Take `name` if it is free or expired, or renew it when `epoch` is our valid tenure's (-1:
    reclaim ours, whatever its epoch). The epoch we hold now, or None when another agent holds it."""
    value: int | None = await conn.fetchval(
        _TAKE_OR_RENEW, name, holder, float(ttl), 0 if epoch is None else epoch
    )
    return value


async def release(conn: asyncpg.Pool | asyncpg.Connection, name: str, holder: str, epoch: int) -> bool:
    """Give the lease up at once (a clean stop); True when it was still ours. The row stays, so the
    next holder's epoch is one more than ours."""
    result: str = await conn.execute(
        """UPDATE agent_leases SET expires_at = now()
           WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()""",
        name,
        holder,
        epoch,
    )
    return result.endswith(" 1")


async def lease_holders(pool: asyncpg.Pool | asyncpg.Connection) -> dict[str, dict[str, Any]]:
    """Every lease by name: its holder (None once it expired or was released), epoch, since when,
    until when. For GET /agents/ (the holder of "leader" does the singleton work)."""
    rows = await pool.fetch(
        """SELECT name, holder, epoch, acquired_at, expires_at, expires_at > now() AS valid
           FROM agent_leases ORDER BY name"""
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        acquired: datetime = r["acquired_at"]
        expires: datetime = r["expires_at"]
        out[r["name"]] = {
            "holder": r["holder"] if r["valid"] else None,
            "last_holder": r["holder"],
            "epoch": r["epoch"],
            "acquired_at": acquired.isoformat(),
            "expires_at": expires.isoformat(),
        }
    return out
