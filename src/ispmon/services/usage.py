"""UsageService: NAS clients, accounting sessions and customer usage, for the API, CLI and Python.

NAS changes are pushed into the listener's `NasDirectory` at once (when the daemon passes one),
so a NAS added through the API is accepted from its next packet on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import ValidationError

from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, ServiceError, editable
from ispmon.services.usage_sources import figures, merge_steps, totals
from ispmon.store.usage_customers import CustomerRepo
from ispmon.store.usage_enforcements import CUSTOMER_ENFORCEMENTS, ENFORCEMENTS
from ispmon.store.usage_flows import FlowUsageRepo
from ispmon.store.usage_nas import NasRepo
from ispmon.store.usage_sessions import ACTIVE_SESSIONS, CUSTOMER_SESSIONS, STEPS, SessionRepo
from ispmon.usage.nas import NasDirectory, NasSpec
from ispmon.usage.periods import counted, period_at, previous, projection

if TYPE_CHECKING:
    from ispmon.store.database import Database

MAX_POINTS = 10_000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def session_dict(row: asyncpg.Record) -> dict[str, Any]:
    end = row["closed_at"] or row["last_at"]
    return {
        "id": row["id"],
        "nas_id": row["nas_id"],
        "acct_session_id": row["session_key"],
        "customer_id": row["customer_id"],
        "username": row["username"],
        "framed_ip": row["framed_ip"],
        "calling_station_id": row["calling_station"],
        "state": "active" if row["closed_at"] is None else "closed",
        "started_at": _iso(row["started_at"]),
        "last_activity_at": _iso(row["last_at"]),
        "closed_at": _iso(row["closed_at"]),
        "duration_seconds": max(row["session_time"], int((end - row["started_at"]).total_seconds())),
        # Acct-Input-Octets counts what the NAS received from the subscriber (upload);
        # Acct-Output-Octets what it sent to them (download). RFC 2866 5.3, 5.4.
        "bytes_in": int(row["in_octets"]),
        "bytes_out": int(row["out_octets"]),
        "terminate_cause": row["terminate_cause"],
        "interim_interval": row["interim_interval"],
        "records": row["records"],
    }


def _enforcement_dict(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    for name in ("period_start", "created_at", "updated_at"):
        out[name] = _iso(row[name])
    return out


def nas_specs(rows: list[asyncpg.Record]) -> list[NasSpec]:
    return [
        NasSpec(id=r["id"], name=r["name"], address=r["address"], secret=r["secret"], coa_port=r["coa_port"])
        for r in rows
    ]


class UsageService:
    def __init__(self, db: Database, directory: NasDirectory | None = None) -> None:
        self.db = db
        self.directory = directory
        self.nas = NasRepo(db.pool)
        self.sessions = SessionRepo(db.pool)
        self.customers = CustomerRepo(db.pool)
        self.flows = FlowUsageRepo(db.pool)

    # -- NAS clients --------------------------------------------------------------------------------
    @staticmethod
    def _nas_dict(row: asyncpg.Record) -> dict[str, Any]:
        return {
            "id": row["id"],
            "name": row["name"],
            "address": row["address"],
            "coa_port": row["coa_port"],
            "source": row["source"],
            "created_at": _iso(row["created_at"]),
        }

    async def refresh_directory(self) -> None:
        if self.directory is not None:
            self.directory.replace(nas_specs(await self.nas.all_with_secrets()))

    async def list_nas(
        self, *, limit: int | None = 100, offset: int = 0, after: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        return [self._nas_dict(r) for r in await self.nas.list(limit=limit, offset=offset, after=after)]

    async def create_nas(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        try:
            spec = NasSpec.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None
        row = await self.nas.insert(
            spec.id, spec.name, spec.address, spec.secret.get_secret_value(), spec.coa_port
        )
        if row is None:
            raise ConflictError(f"a NAS with id {spec.id!r} already exists", field="id")
        await self.refresh_directory()
        return self._nas_dict(row)

    async def delete_nas(self, nas_id: str) -> None:
        editable(await self.nas.get(nas_id), "NAS", nas_id, "remove")
        await self.nas.delete(nas_id)
        await self.refresh_directory()

    # -- sessions -----------------------------------------------------------------------------------
    async def active_sessions(
        self,
        *,
        nas_id: str | None = None,
        customer_id: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        rows = await self.sessions.list(
            ACTIVE_SESSIONS,
            {"open": True, "nas_id": nas_id, "customer_id": customer_id},
            limit=limit,
            offset=offset,
            after=after,
        )
        return [session_dict(r) for r in rows]

    async def get_session(self, session_id: int) -> dict[str, Any]:
        row = await self.sessions.get(session_id)
        if row is None:
            raise NotFoundError("session", session_id)
        return session_dict(row)

    async def customer_sessions(
        self,
        customer_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._customer(customer_id)
        rows = await self.sessions.list(
            CUSTOMER_SESSIONS,
            {"customer_id": customer_id, "since": since, "until": until},
            limit=limit,
            offset=offset,
            after=after,
        )
        return [session_dict(r) for r in rows]

    async def _customer(self, customer_id: str) -> asyncpg.Record:
        row = await self.customers.get(customer_id)
        if row is None:
            raise NotFoundError("customer", customer_id)
        return row

    # -- usage --------------------------------------------------------------------------------------
    async def customer_usage(
        self,
        customer_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        step: str = "hour",
    ) -> dict[str, Any]:
        """Octets in, out and total per step (hour, day or month, in the customer's time zone)."""
        row = await self._customer(customer_id)
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=1)
        if until <= since:
            # A bad query window, as every list route answers it: 400 naming until.
            raise ServiceError("must be after since", field="until")
        if step not in STEPS:
            raise InvalidInput([{"field": "step", "message": f"must be one of {', '.join(STEPS)}"}])
        hours = {"hour": 1, "day": 24, "month": 24 * 28}[step]
        if (until - since) / timedelta(hours=hours) > MAX_POINTS:
            raise InvalidInput(
                [{"field": "step", "message": f"more than {MAX_POINTS} steps: use a longer step"}]
            )
        timezone = row["spec"].get("timezone", "UTC")
        points = await self.sessions.usage(customer_id, since, until, step, timezone)
        flow = await self.flows.per_step(customer_id, since, until, step, timezone)
        items = merge_steps(points, flow)
        return {
            "customer_id": customer_id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "step": step,
            "timezone": timezone,
            "items": items,
            "bytes_in": sum(i["bytes_in"] for i in items),
            "bytes_out": sum(i["bytes_out"] for i in items),
            "bytes_total": sum(i["bytes_total"] for i in items),
            "sources": totals(items),
        }

    async def usage_summary(self, customer_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        """This period so far against the quota, the previous period, and the projection at the
        current pace (from the daily rollups, in the customer's time zone)."""
        row = await self._customer(customer_id)
        spec = row["spec"]
        now = now or datetime.now(UTC)
        kind, reset_day, zone = (
            spec.get("period", "monthly"),
            spec.get("reset_day", 1),
            spec.get("timezone", "UTC"),
        )
        counts, quota = spec.get("counts", "total"), spec.get("quota_bytes")
        quota_source = spec.get("quota_source", "radius")
        period = period_at(kind, reset_day, zone, now)
        before = previous(kind, reset_day, zone, period)
        radius = await self.sessions.used_since(customer_id, period.start, period.end)
        flow = await self.flows.used(customer_id, period.start, period.end)
        # (in/upload, out/download) of the source the quota counts; the other is shown beside it.
        used_in, used_out = flow if quota_source == "flow" else radius
        used = counted(counts, used_in, used_out)
        used_before = self.flows.used if quota_source == "flow" else self.sessions.used_since
        prev = counted(counts, *await used_before(customer_id, before.start, before.end))
        projected, reach = projection(used, quota, period, now)
        if quota is not None and used >= quota:
            crossed = await self.sessions.crossed_at(customer_id, period.start, 100)
            reach = crossed or reach
        return {
            "customer_id": customer_id,
            "period": {"kind": kind, "start": period.start.isoformat(), "end": period.end.isoformat()},
            "counts": counts,
            "quota_source": quota_source,
            "used_bytes": used,
            "bytes_in": used_in,
            "bytes_out": used_out,
            "quota_bytes": quota,
            "percent": round(100 * used / quota, 2) if quota else None,
            "previous_period": {
                "start": before.start.isoformat(),
                "end": before.end.isoformat(),
                "used_bytes": prev,
            },
            # The projected total against the previous period's (a partial period against a whole
            # one would always look like a drop).
            "change_bytes": projected - prev,
            "change_percent": round(100 * (projected - prev) / prev, 2) if prev else None,
            "projected_bytes": projected,
            "quota_reached_at": _iso(reach),
            "sources": [
                {**figures(name, down, up), "used_bytes": counted(counts, up, down)}
                for name, (up, down) in (("radius", radius), ("flow", flow))
            ],
        }

    async def enforcements(
        self,
        *,
        customer_id: str | None = None,
        state: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The enforcement audit trail, newest first."""
        rows = await self.sessions.list(
            ENFORCEMENTS,
            {"customer_id": customer_id, "state": state},
            limit=limit,
            offset=offset,
            after=after,
        )
        return [_enforcement_dict(r) for r in rows]

    async def customer_enforcements(
        self,
        customer_id: str,
        *,
        state: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._customer(customer_id)
        rows = await self.sessions.list(
            CUSTOMER_ENFORCEMENTS,
            {"customer_id": customer_id, "state": state},
            limit=limit,
            offset=offset,
            after=after,
        )
        return [_enforcement_dict(r) for r in rows]

    async def top_usage(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 10
    ) -> list[dict[str, Any]]:
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=1)
        if until <= since:
            # A bad query window, as every list route answers it: 400 naming until.
            raise ServiceError("must be after since", field="until")
        rows = await self.sessions.top(since, until, limit)
        return [
            {
                "customer_id": r["customer_id"],
                "bytes_in": int(r["bytes_in"]),
                "bytes_out": int(r["bytes_out"]),
                "bytes_total": int(r["bytes_total"]),
            }
            for r in rows
        ]

    async def sync_nas_config(self, specs: list[NasSpec]) -> list[str]:
        removed = await self.nas.sync_config(
            [(s.id, s.name, s.address, s.secret.get_secret_value(), s.coa_port) for s in specs]
        )
        await self.refresh_directory()
        return removed
