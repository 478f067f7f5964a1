"""The daemon's report work, one loop: roll the endpoint history up, prune rollups past
ROLLUP_RETENTION_DAYS, and send the scheduled reports that are due through the outbox.

A failure is logged once per state change and retried next minute: rollup progress only moves
with the buckets it covers, and a schedule's period is marked sent only with its notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from ispmon.reports import query as report_query
from ispmon.reports.base import MEDIA_TYPES, file_name
from ispmon.reports.kinds import KINDS
from ispmon.reports.schedules import ReportSchedule, due
from ispmon.services.reports import ReportService
from ispmon.store import endpoint_rollups, report_runs
from ispmon.store.database import Database

log = structlog.get_logger(__name__)

INTERVAL = 60.0


def message(
    schedule: ReportSchedule, start: datetime, end: datetime, totals: dict[str, Any], name: str
) -> tuple[str, str]:
    """The notification's title and body: what the attached file is, and its headline figures."""
    kind = KINDS[schedule.kind]
    title = schedule.title or f"{kind.title} report {start.date().isoformat()} to {end.date().isoformat()}"
    lines = [f"{kind.title} report for {start.isoformat()} to {end.isoformat()} (UTC), attached as {name}."]
    for key, val in totals.items():
        if not isinstance(val, dict):
            shown = f"{val:.3f}" if isinstance(val, float) else str(val)
            lines.append(f"{key.replace('_', ' ')}: {shown}")
    return title, "\n".join(lines)


async def send_due(
    db: Database, schedules: Sequence[ReportSchedule], now: datetime | None = None
) -> list[tuple[str, datetime]]:
    """Render and enqueue every schedule's due period not sent yet; the (schedule, period start) sent."""
    now = now or datetime.now(UTC)
    service = ReportService(db)
    out = []
    for schedule in schedules:
        found = due(schedule, now)
        if found is None:
            continue
        _, start, end = found
        if await report_runs.sent(db.pool, schedule.id, start):
            continue
        kind = KINDS[schedule.kind]
        query = report_query.build(kind, start, end, schedule.filters(), now=now)
        document = await service.document(kind, query)
        content = await service.render(kind, query, schedule.format)
        name = file_name(kind.name, query.since, query.until, schedule.format)
        title, body = message(schedule, query.since, query.until, document["totals"], name)
        ids = await report_runs.record(
            db.pool,
            schedule_id=schedule.id,
            period_start=start,
            period_end=end,
            kind=kind.name,
            fmt=schedule.format,
            file_name=name,
            media_type=MEDIA_TYPES[schedule.format],
            content=content,
            channels=schedule.channels,
            title=title,
            body=body,
        )
        if ids:
            log.info("scheduled_report_queued", schedule=schedule.id, period_start=start.isoformat(), file=name,
                     notifications=len(ids))  # fmt: skip
            out.append((schedule.id, start))
    return out


async def report_loop(
    db: Database,
    retention_days: int,
    schedules: Sequence[ReportSchedule],
    wake: Callable[[], None] | None = None,
    interval: float = INTERVAL,
) -> None:
    failing = False
    while True:
        try:
            await endpoint_rollups.rollup(db.pool)
            await endpoint_rollups.drop_old(db.pool, retention_days)
            await report_runs.drop_old(db.pool, retention_days, datetime.now(UTC))
            if await send_due(db, schedules) and wake is not None:
                wake()
            if failing:
                log.info("report_work_recovered")
            failing = False
        except Exception as exc:
            if not failing:  # once per state change, not once a minute
                log.error("report_work_failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            failing = True
        await asyncio.sleep(interval)


def start(
    db: Database, settings: Any, schedules: Sequence[ReportSchedule], wake: Callable[[], None] | None
) -> asyncio.Task[None]:
    """The daemon's one line: the loop as a task."""
    return asyncio.create_task(report_loop(db, settings.rollup_retention_days, schedules, wake), name="reports")
