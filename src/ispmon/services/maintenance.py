"""MaintenanceService: maintenance windows (one-off and recurring) through the API and Python."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import ValidationError

from ispmon.availability.maintenance import MaintenanceWindowSpec, next_occurrence, occurrence_at
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, editable

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor
    from ispmon.store.database import Database


def window_from_row(row: asyncpg.Record) -> MaintenanceWindowSpec:
    return MaintenanceWindowSpec.model_validate(row["spec"])


class MaintenanceService:
    def __init__(self, db: Database, monitor: Monitor | None = None) -> None:
        self.db = db
        self.monitor = monitor

    def _validate(self, data: Any) -> MaintenanceWindowSpec:
        if not isinstance(data, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        try:
            return MaintenanceWindowSpec.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None

    def _dict(self, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
        window = window_from_row(row)
        out = window.model_dump(mode="json")
        current = occurrence_at(window, now)
        upcoming = next_occurrence(window, now)
        out["source"] = row["source"]
        out["active"] = current is not None
        out["current_occurrence"] = (
            {"start": current[0].isoformat(), "end": current[1].isoformat()} if current else None
        )
        out["next_occurrence"] = (
            {"start": upcoming[0].isoformat(), "end": upcoming[1].isoformat()} if upcoming else None
        )
        return out

    async def windows(self) -> list[MaintenanceWindowSpec]:
        return [window_from_row(r) for r in await self.db.maintenance.all()]

    async def _refresh_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.set_maintenance(await self.windows())

    async def list_windows(
        self, *, limit: int | None = None, offset: int = 0, after: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        """By id; every window unless `limit` is given. `after` is the (id,) of the last window seen."""
        rows = await self.db.maintenance.list(limit=limit, offset=offset, after=after)
        now = datetime.now(UTC)
        return [self._dict(r, now) for r in rows]

    async def active_windows(self) -> list[dict[str, Any]]:
        return [w for w in await self.list_windows() if w["active"]]

    async def get_window(self, window_id: str) -> dict[str, Any]:
        row = await self.db.maintenance.get(window_id)
        if row is None:
            raise NotFoundError("maintenance window", window_id)
        return self._dict(row, datetime.now(UTC))

    async def create_window(self, data: dict[str, Any]) -> dict[str, Any]:
        window = self._validate(data)
        row = await self.db.maintenance.insert(window.id, window.name, window.model_dump(mode="json"))
        if row is None:
            raise ConflictError(f"a maintenance window with id {window.id!r} already exists", field="id")
        await self._refresh_monitor()
        return self._dict(row, datetime.now(UTC))

    async def update_window(self, window_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        row = editable(await self.db.maintenance.get(window_id), "maintenance window", window_id, "change")
        if "id" in changes and changes["id"] != window_id:
            raise InvalidInput([{"field": "id", "message": "cannot be changed"}])
        current = dict(row["spec"])
        # A window is either one-off or recurring: switching kinds drops the other kind's fields.
        if "rrule" in changes or "duration_minutes" in changes:
            current.pop("ends_at", None)
        if "ends_at" in changes:
            current.pop("rrule", None)
            current.pop("duration_minutes", None)
        window = self._validate({**current, **changes, "id": window_id})
        row = await self.db.maintenance.update(window_id, window.name, window.model_dump(mode="json"))
        await self._refresh_monitor()
        return self._dict(row, datetime.now(UTC))

    async def delete_window(self, window_id: str) -> None:
        editable(await self.db.maintenance.get(window_id), "maintenance window", window_id, "remove")
        await self.db.maintenance.delete(window_id)
        await self._refresh_monitor()
