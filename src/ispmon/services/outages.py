"""OutageService: outage listing, detail, manual resolution and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from ispmon.availability.redaction import public_check, public_text
from ispmon.models import Severity
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor
    from ispmon.store.database import Database


def outage_dict(row: asyncpg.Record, now: datetime | None = None) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items()}
    out["active"] = row["resolved_at"] is None
    if isinstance(out.get("error"), str):  # a probe's error may quote a URL with a query secret
        out["error"] = public_text(out["error"])
    if row["resolved_at"] is None:
        out["duration_seconds"] = round(((now or datetime.now(UTC)) - row["started_at"]).total_seconds(), 3)
    return out


def _public_data(data: Any) -> Any:
    return public_check(data) if isinstance(data, dict) else data  # an event may carry the error


class OutageService:
    def __init__(self, db: Database, monitor: Monitor | None = None) -> None:
        self.db = db
        self.monitor = monitor

    async def list_outages(
        self,
        *,
        endpoint_id: str | None = None,
        severity: str | None = None,
        active: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. `after` is the (started_at, id) of the last outage of the previous page."""
        if severity is not None and severity not in {s.value for s in Severity}:
            raise InvalidInput(
                [{"field": "severity", "message": f"must be one of {', '.join(s.value for s in Severity)}"}]
            )
        rows = await self.db.outages.list(
            endpoint_id=endpoint_id,
            severity=severity,
            active=active,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            after=after,
        )
        now = datetime.now(UTC)
        return [outage_dict(r, now) for r in rows]

    async def active_outages(self) -> list[dict[str, Any]]:
        return await self.list_outages(active=True, limit=10000)

    async def get_outage(self, outage_id: int) -> dict[str, Any]:
        row = await self.db.outages.get(outage_id)
        if row is None:
            raise NotFoundError("outage", outage_id)
        out = outage_dict(row)
        events = await self.db.pool.fetch(
            "SELECT at, kind, data FROM endpoint_events WHERE outage_id = $1 ORDER BY at, id", outage_id
        )
        out["events"] = [
            {"at": e["at"].isoformat(), "kind": e["kind"], "data": _public_data(e["data"])} for e in events
        ]
        return out

    async def resolve_outage(
        self, outage_id: int, notes: str | None = None, resolved_by: str | None = None
    ) -> dict[str, Any]:
        """Resolve by hand (e.g. the endpoint is being decommissioned). A target that is still failing
        opens a new outage after the detection threshold, as it should."""
        row = await self.db.outages.get(outage_id)
        if row is None:
            raise NotFoundError("outage", outage_id)
        if row["resolved_at"] is not None:
            raise ConflictError(
                f"outage {outage_id} was already resolved at {row['resolved_at'].isoformat()}",
                field="outage_id",
            )
        resolved = await self.db.outages.resolve(
            outage_id,
            resolved_at=datetime.now(UTC),
            resolution="manual",
            notes=notes,
            resolved_by=resolved_by,
        )
        if resolved is None:  # resolved automatically between the two statements
            raise ConflictError(f"outage {outage_id} was resolved meanwhile", field="outage_id")
        if self.monitor is not None:
            self.monitor.outage_resolved_elsewhere(row["endpoint_id"])
            if self.monitor.alerts is not None:
                await self.monitor.alerts.outage_resolved(
                    row["endpoint_id"],
                    outage_id,
                    resolved["resolved_at"],
                    resolved["duration_seconds"] or 0.0,
                    "manual",
                )
        return outage_dict(resolved)

    async def outage_summary(self, hours: float = 24.0) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        summary = await self.db.outages.summary(since)
        summary["window_hours"] = hours
        summary["since"] = since.isoformat()
        return summary
