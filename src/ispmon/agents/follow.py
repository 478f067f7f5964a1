"""What the other agents checked, followed from the history, so that this agent's API, dashboard
and alert engine (a parent's status, for dependency suppression) see every endpoint's current
status, not only those it checks itself. One indexed query every few seconds reads the rows
written since the last one (by id); an endpoint this agent checks is never touched.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
import structlog

from ispmon.availability.outages import EndpointState
from ispmon.models import ErrorKind, ProbeResult, Status

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor

log = structlog.get_logger("ispmon.agents")

FOLLOW_INTERVAL = 2.0
_STATUSES = frozenset(s.value for s in Status)
_KINDS = frozenset(k.value for k in ErrorKind)


async def follow_others(pool: asyncpg.Pool, monitor: Monitor, interval: float = FOLLOW_INTERVAL) -> None:
    last_id: int = await pool.fetchval("SELECT coalesce(max(id), 0) FROM status_history")
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            rows = await pool.fetch(
                """SELECT id, endpoint_id, checked_at, status, response_time_ms, error_kind, error
                   FROM status_history WHERE id > $1 AND agent_id IS DISTINCT FROM $2
                   ORDER BY id LIMIT 100000""",
                last_id,
                monitor.agent_id,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if not failing:
                failing = True
                log.warning("agents_follow_failed", error=str(exc) or type(exc).__name__)
            continue
        failing = False
        if rows:
            last_id = rows[-1]["id"]
        apply_rows(monitor, rows)


def apply_rows(monitor: Monitor, rows: list[asyncpg.Record]) -> None:
    runtimes, scheduler = monitor.runtimes, monitor.scheduler
    for r in rows:
        runtime = runtimes.get(r["endpoint_id"])
        if runtime is None or r["endpoint_id"] in scheduler or r["status"] not in _STATUSES:
            continue
        status = Status(r["status"])
        kind = ErrorKind(r["error_kind"]) if r["error_kind"] in _KINDS else None
        runtime.state = EndpointState(status=status)
        runtime.last = (r["checked_at"], ProbeResult(status, r["response_time_ms"], kind, r["error"]))
        runtime.stale = True  # re-read in full if this agent takes it over
