"""The status read's 24-hour uptime leaves out the checks that say nothing about the target:
maintenance, and UNKNOWN (our own trouble: exhausted descriptors, a starved loop, a probe bug)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.services import AvailabilityService
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS, history_row


async def test_unknown_and_maintenance_checks_do_not_lower_uptime(db: Database) -> None:
    service = AvailabilityService(db)
    await service.create_endpoint({"id": "web", "name": "Web", "url": "http://127.0.0.1:1/"})
    now = datetime.now(UTC)
    results = (
        [ProbeResult(Status.UP, 5.0)] * 6
        + [ProbeResult(Status.DOWN, None, ErrorKind.REFUSED, "refused")] * 2
        + [ProbeResult(Status.UNKNOWN, None, ErrorKind.INTERNAL, "no descriptor left")] * 5
        + [ProbeResult(Status.MAINTENANCE, None)] * 3
    )
    rows = [history_row("web", now - timedelta(minutes=i + 1), r) for i, r in enumerate(results)]
    await db.pool.copy_records_to_table("status_history", records=rows, columns=HISTORY_COLUMNS)
    day = (await service.get_status("web"))["last_24h"]
    assert (day["checks"], day["up"], day["down"], day["unknown"]) == (16, 6, 2, 5)
    # 6 of the 8 checks that judged the target: the 5 UNKNOWN and 3 maintenance ones are left out.
    assert day["uptime_percent"] == 75.0
