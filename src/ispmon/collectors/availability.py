"""Availability collectors: check endpoints now, record the results, return them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ispmon.services.availability import AvailabilityService

if TYPE_CHECKING:
    from ispmon.services.views import CheckResult
    from ispmon.store.database import Database

# Checks in flight at once when collecting every endpoint: enough to finish a few hundred
# endpoints within one timeout, few enough not to look like a scan from the monitoring host.
DEFAULT_CONCURRENCY = 50


async def collect_specific_service_availability(db: Database, endpoint_id: str) -> CheckResult:
    """Check one endpoint now and record the result (NotFoundError if there is no such endpoint)."""
    return await AvailabilityService(db).check_service(endpoint_id)


async def collect_service_availability(
    db: Database, *, concurrency: int = DEFAULT_CONCURRENCY
) -> list[CheckResult]:
    """Check every active endpoint once now, at most `concurrency` at a time, and record the results."""
    return await AvailabilityService(db).check_all(concurrency=concurrency)
