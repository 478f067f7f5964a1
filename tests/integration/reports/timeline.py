"""A scripted day of one endpoint's history, with outages inside and outside maintenance, whose
SLA figures are known by hand; shared by the rollup, report and schedule tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ispmon.availability.maintenance import MaintenanceWindowSpec
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.services import AvailabilityService
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS, history_row

START = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)
H = timedelta(hours=1)
# web: outage A 01:00-01:30 (1,800 s, no maintenance); outage B 03:30-04:15, maintenance 03:00-04:00:
# 1,800 s of B inside maintenance, 900 s outside. Downtime 2,700 s, maintenance 3,600 s.
OUTAGES = [(START + H, START + H * 1.5), (START + H * 3.5, START + H * 4.25)]
MAINTENANCE = (START + H * 3, START + H * 4)
DOWNTIME = 2700.0
MAINTENANCE_S = 3600.0
SLA_DAY = 100 * (86400 - 3600 - 2700) / (86400 - 3600)
# Response times of the UP checks: 1..100 ms, cycling, so the exact nearest-rank figures are known.
def response_ms(minute: int) -> float:
    return float(minute % 100 + 1)


def _result(at: datetime, minute: int) -> ProbeResult:
    if MAINTENANCE[0] <= at < MAINTENANCE[1]:
        return ProbeResult(Status.MAINTENANCE, None)
    if any(a <= at < b for a, b in OUTAGES):
        return ProbeResult(Status.DOWN, None, ErrorKind.REFUSED, "refused")
    return ProbeResult(Status.UP, response_ms(minute))


async def script_day(db: Database, *, days: int = 1) -> list[float]:
    """Creates web (tag edge) and dns (tag core), a check a minute for `days` days from START, the
    outages and the window; returns web's UP response times."""
    service = AvailabilityService(db)
    await service.create_endpoint({"id": "web", "name": "Web", "url": "http://127.0.0.1:1/", "tags": ["edge"]})
    await service.create_endpoint({"id": "dns", "name": "DNS", "url": "tcp://127.0.0.1:1", "tags": ["core"]})
    await db.pool.execute("UPDATE endpoints SET created_at = $1", START - DAY)
    rows = []
    times = []
    for minute in range(days * 1440):
        at = START + timedelta(minutes=minute)
        result = _result(at, minute)
        rows.append(history_row("web", at, result))
        rows.append(history_row("dns", at, ProbeResult(Status.UP, 2.0)))
        if result.status is Status.UP:
            times.append(result.response_time_ms)
    await db.pool.copy_records_to_table("status_history", records=rows, columns=HISTORY_COLUMNS)
    for started, resolved in OUTAGES:
        await db.pool.execute(
            """INSERT INTO outages (endpoint_id, started_at, declared_at, resolved_at, duration_seconds, status,
                                    severity, resolution, resolution_notes)
               VALUES ('web', $1, $1::timestamptz + interval '3 minutes', $2, $3, 'down', 'high', 'manual',
                       'fibre cut, spliced')""",
            started,
            resolved,
            (resolved - started).total_seconds(),
        )
    window = MaintenanceWindowSpec(
        id="mw-upgrade", name="upgrade", starts_at=MAINTENANCE[0], ends_at=MAINTENANCE[1], endpoint_ids=["web"]
    )
    await db.maintenance.insert(window.id, window.name, window.public_dict())
    return times  # type: ignore[return-value]


def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    import math

    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]
