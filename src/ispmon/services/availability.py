"""AvailabilityService: endpoints, on-demand checks, current status, history and the status summary.

Works with a running `Monitor` (the daemon: changes reach the scheduler at once, checks go through
the state machine) or without one (a Python user or the CLI: checks run directly and are recorded).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import ValidationError

from ispmon.availability.endpoints import (
    PROTOCOL_FIELDS,
    EndpointDefaults,
    EndpointSpec,
    build_endpoint,
    numbered_slug,
    restore_redacted,
)
from ispmon.availability.redaction import public_check, public_text
from ispmon.models import Status
from ispmon.probes.base import ProbeContext, run_check
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, editable
from ispmon.services.public_cache import PublicJsonCache
from ispmon.services.spec_cache import SpecCache
from ispmon.services.views import CheckResult, Endpoint
from ispmon.store.history import HISTORY_COLUMNS, history_row
from ispmon.store.locations import LocationVerdicts

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor
    from ispmon.store.database import Database


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# Fields the API adds to an endpoint's definition; ignored when a client sends them back.
READ_ONLY_FIELDS = frozenset({"source", "created_at", "updated_at", "current_status"})


class AvailabilityService:
    def __init__(
        self,
        db: Database,
        monitor: Monitor | None = None,
        defaults: EndpointDefaults | None = None,
    ) -> None:
        self.db = db
        self.monitor = monitor
        self.defaults = defaults or EndpointDefaults()
        self.specs = SpecCache()
        self.public = PublicJsonCache()

    # -- endpoints ---------------------------------------------------------------------------------
    def _validate(self, data: Any) -> EndpointSpec:
        if not isinstance(data, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        try:
            return build_endpoint(data, self.defaults)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None

    def _view(self, row: asyncpg.Record) -> Endpoint:
        current: Status | None = None
        if self.monitor is not None:
            snap = self.monitor.snapshot(row["id"])
            current = Status(snap["status"]) if snap else Status.UNKNOWN
        spec, public = self.specs.get(
            row["id"], row["spec"], lambda data: build_endpoint(data, self.defaults, stored=True)
        )
        return Endpoint(
            spec=spec,
            public=public,
            source=row["source"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            current_status=current,
        )

    async def _check_parent(self, spec: EndpointSpec) -> None:
        """`parent` names an existing endpoint, and following parents never leads back here."""
        seen = {spec.id}
        parent = spec.parent
        while parent is not None:
            row = await self.db.endpoints.get(parent)
            if row is None:
                message = f"no endpoint {parent!r}" + (
                    "" if parent == spec.parent else f" (parent of {spec.parent!r})"
                )
                raise InvalidInput([{"field": "parent", "message": message}])
            if parent in seen or len(seen) > 16:
                raise InvalidInput(
                    [{"field": "parent", "message": f"parents would form a cycle through {parent!r}"}]
                )
            seen.add(parent)
            parent = row["spec"].get("parent")

    async def create_endpoint(self, data: dict[str, Any]) -> Endpoint:
        spec = self._validate(data)
        await self._check_parent(spec)
        row = await self.db.endpoints.insert(spec, source="api")
        # An id derived from the name that is taken already ("web", then another "Web") becomes
        # "web-2", "web-3", ...: a 409 is only for an id the client sent itself.
        base, number = spec.id, 1
        while row is None and data.get("id") is None and number < 100:
            number += 1
            spec = self._validate({**data, "id": numbered_slug(base, number)})
            row = await self.db.endpoints.insert(spec, source="api")
        if row is None:
            raise ConflictError(f"an endpoint with id {spec.id!r} already exists", field="id")
        self.public.discard(spec.id)
        if self.monitor is not None:
            self.monitor.upsert(spec)
        return self._view(row)

    async def list_endpoints(
        self,
        *,
        protocol: str | None = None,
        tag: str | None = None,
        active: bool | None = None,
        limit: int = 1000,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[Endpoint]:
        rows = await self.db.endpoints.list(
            protocol=protocol, tag=tag, active=active, limit=limit, offset=offset, after=after
        )
        return [self._view(r) for r in rows]

    async def list_endpoints_json(
        self,
        *,
        protocol: str | None = None,
        tag: str | None = None,
        active: bool | None = None,
        limit: int = 1000,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[tuple[str, bytes]]:
        """`list_endpoints` as the API shows it: (id, the JSON of `Endpoint.to_dict()`) per row, the
        same bytes `json.dumps` makes, taken from `self.public` while the row is unchanged."""
        rows = await self.db.endpoints.list_text(
            protocol=protocol, tag=tag, active=active, limit=limit, offset=offset, after=after
        )
        item, encode, monitor = self.public.item, self._public_dict, self.monitor
        if monitor is None:
            return [(r["id"], item(r, None, encode)) for r in rows]
        status = monitor.current_status
        return [(r["id"], item(r, status(r["id"]), encode)) for r in rows]

    def _public_dict(self, row: asyncpg.Record) -> dict[str, Any]:
        """`Endpoint.to_dict()` without current_status, from a row of `EndpointRepo.list_text`."""
        spec, public = self.specs.get(
            row["id"],
            json.loads(row["spec_text"]),
            lambda data: build_endpoint(data, self.defaults, stored=True),
        )
        view = Endpoint(
            spec=spec,
            public=public,
            source=row["source"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        return view.to_dict()

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        row = await self.db.endpoints.get(endpoint_id)
        if row is None:
            raise NotFoundError("endpoint", endpoint_id)
        return self._view(row)

    async def update_endpoint(self, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
        """Partial update: the given fields replace the stored ones; the result is validated whole."""
        if not isinstance(changes, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        row = editable(await self.db.endpoints.get(endpoint_id), "endpoint", endpoint_id, "change")
        if "id" in changes and changes["id"] != endpoint_id:
            raise InvalidInput([{"field": "id", "message": "cannot be changed (delete and create instead)"}])
        # What GET adds to a definition may come back in a PUT of the whole object: not an error.
        changes = {k: v for k, v in changes.items() if k not in READ_ONLY_FIELDS}
        current = dict(row["spec"])
        # Protocol-specific fields are dropped when the protocol changes, unless given again.
        protocol = changes.get("protocol", current["protocol"])
        if isinstance(protocol, str):
            protocol = protocol.lower()  # protocol names are accepted in any case: "HTTPS" is no change
        if protocol != current["protocol"]:
            current = {k: v for k, v in current.items() if k not in PROTOCOL_FIELDS}
        spec = self._validate({**current, **restore_redacted(changes, current), "id": endpoint_id})
        await self._check_parent(spec)
        row = await self.db.endpoints.upsert(spec, source="api")  # a new target closes the open outage
        self.public.discard(endpoint_id)
        if self.monitor is not None:
            await self.monitor.replace(spec)  # ... and makes the status unknown
        return self._view(row)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        editable(await self.db.endpoints.get(endpoint_id), "endpoint", endpoint_id, "remove")
        await self.db.endpoints.delete(endpoint_id)
        self.specs.discard(endpoint_id)
        self.public.discard(endpoint_id)
        if self.monitor is not None:
            self.monitor.remove(endpoint_id)

    async def _spec(self, endpoint_id: str) -> EndpointSpec:
        row = await self.db.endpoints.get(endpoint_id)
        if row is None:
            raise NotFoundError("endpoint", endpoint_id)
        return build_endpoint(row["spec"], self.defaults, stored=True)

    # -- checks and status -------------------------------------------------------------------------
    async def check_service(self, endpoint_id: str) -> CheckResult:
        """Run one check now and record it; returns the result."""
        (result,) = await self._check([await self._spec(endpoint_id)], concurrency=1)
        return result

    async def check_all(self, *, concurrency: int = 50) -> list[CheckResult]:
        """Check every active endpoint once now, at most `concurrency` at a time, and record the
        results; returns them in endpoint id order."""
        rows = [r for r in await self.db.endpoints.all() if r["is_active"]]
        return await self._check(
            [build_endpoint(r["spec"], self.defaults, stored=True) for r in rows], concurrency
        )

    async def _check(self, specs: list[EndpointSpec], concurrency: int) -> list[CheckResult]:
        """With a monitor that runs an endpoint, its check goes through the state machine (and the
        monitor records it); otherwise it runs here, and all such results are written in one COPY."""
        gate = asyncio.Semaphore(max(1, concurrency))
        ctx = ProbeContext()  # one HTTP session and resolver cache for the whole batch

        async def one(spec: EndpointSpec) -> tuple[CheckResult, tuple[Any, ...] | None]:
            async with gate:
                if self.monitor is not None and spec.id in self.monitor.runtimes:
                    outcome = await self.monitor.check_now(spec.id)
                    if outcome is not None:
                        return CheckResult.from_probe(spec.id, *outcome), None
                checked_at = datetime.now(UTC)
                result = await run_check(spec, ctx)
            row = history_row(spec.id, checked_at, result)
            return CheckResult.from_probe(spec.id, checked_at, result), row

        try:
            # A TaskGroup, not gather: should one check raise (a bug), the others are cancelled
            # before the shared context closes under them.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(spec)) for spec in specs]
        finally:
            await ctx.close()
        done = [task.result() for task in tasks]
        records = [row for _, row in done if row is not None]
        if records:
            async with self.db.pool.acquire() as conn:
                await conn.copy_records_to_table("status_history", records=records, columns=HISTORY_COLUMNS)
        return [result for result, _ in done]

    async def get_status(self, endpoint_id: str) -> dict[str, Any]:
        row = await self.db.endpoints.get(endpoint_id)
        if row is None:
            raise NotFoundError("endpoint", endpoint_id)
        now = datetime.now(UTC)
        # Several agents: only the one that checks it knows its live state; another reads the history.
        monitor = self.monitor
        snap = monitor.snapshot(endpoint_id) if monitor is not None and monitor.checks_here(endpoint_id) else None
        out: dict[str, Any] = {"endpoint_id": endpoint_id, "name": row["name"], "is_active": row["is_active"]}
        if snap is not None:
            out.update(snap)
        else:
            latest = (await self.db.history.latest([endpoint_id])).get(endpoint_id)
            out["status"] = latest["status"] if latest else "unknown"
            if latest:
                out["last_check"] = {
                    "checked_at": _iso(latest["checked_at"]),
                    "status": latest["status"],
                    "response_time_ms": latest["response_time_ms"],
                    "error_kind": latest["error_kind"],
                    "error": latest["error"],
                }
        open_rows = await self.db.outages.list(endpoint_id=endpoint_id, active=True, limit=1)
        out["open_outage"] = _outage_brief(open_rows[0]) if open_rows else None
        stats = await self.db.history.stats(endpoint_id, now - timedelta(hours=24))
        out["last_24h"] = _stats_dict(stats)
        if isinstance(out.get("last_check"), dict):
            out["last_check"] = public_check(out["last_check"])
        agents = monitor.agents if monitor is not None else None
        if agents is not None:
            statuses = await LocationVerdicts(self.db.pool).statuses(endpoint_id, agents.dead_after)
            if len(statuses) > 1 or row["spec"].get("locations"):
                out["locations"] = statuses
            if snap is None and out["status"] != "unknown":
                latest = await self.db.history.latest([endpoint_id])
                out["checked_by"] = latest[endpoint_id]["agent_id"] if endpoint_id in latest else None
        return out

    async def get_history(
        self,
        endpoint_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: tuple[datetime, int] | None = None,
    ) -> dict[str, Any]:
        if await self.db.endpoints.get(endpoint_id) is None:
            raise NotFoundError("endpoint", endpoint_id)
        # One row more than asked tells whether another page exists (no empty last page).
        rows = await self.db.history.history(
            endpoint_id, since=since, until=until, limit=limit + 1, before_id=cursor
        )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "checked_at": _iso(r["checked_at"]),
                "status": r["status"],
                "response_time_ms": r["response_time_ms"],
                "error_kind": r["error_kind"],
                "error": r["error"],
                "attempts": r["attempts"],
                "details": r["details"],
            }
            for r in rows
        ]
        items = [public_check(item) for item in items]  # a redirect's URL may carry a query secret
        next_cursor = f"{rows[-1]['checked_at'].isoformat()}~{rows[-1]['id']}" if more else None
        return {"endpoint_id": endpoint_id, "items": items, "count": len(items), "next_cursor": next_cursor}

    async def status_summary(self) -> dict[str, Any]:
        rows = await self.db.endpoints.all()
        counts: dict[str, int] = {}
        by_protocol: dict[str, dict[str, int]] = {}
        not_up = []
        monitor = self.monitor
        elsewhere = [r["id"] for r in rows if monitor is None or not monitor.checks_here(r["id"])]
        latest = await self.db.history.latest(elsewhere) if elsewhere else {}
        for row in rows:
            if monitor is not None and monitor.checks_here(row["id"]):
                snap = monitor.snapshot(row["id"])
                status = snap["status"] if snap else "unknown"
            else:
                status = latest[row["id"]]["status"] if row["id"] in latest else "unknown"
            if not row["is_active"]:
                status = "inactive"
            counts[status] = counts.get(status, 0) + 1
            by_protocol.setdefault(row["protocol"], {}).setdefault(status, 0)
            by_protocol[row["protocol"]][status] += 1
            if status not in ("up", "inactive"):
                not_up.append({"endpoint_id": row["id"], "name": row["name"], "status": status})
        return {
            "total": len(rows),
            "by_status": counts,
            "by_protocol": by_protocol,
            "not_up": not_up,
            "active_outages": await self.db.outages.count_open(),
            "generated_at": datetime.now(UTC).isoformat(),
        }


def _stats_dict(stats: asyncpg.Record) -> dict[str, Any]:
    checks = stats["checks"] or 0
    # Maintenance and UNKNOWN checks say nothing about the target (UNKNOWN is our own trouble:
    # exhausted descriptors, a starved loop, a probe bug), so neither counts against its uptime.
    counted = checks - (stats["maintenance"] or 0) - (stats["unknown"] or 0)
    return {
        "checks": checks,
        "up": stats["up"],
        "degraded": stats["degraded"],
        "down": stats["down"],
        "unknown": stats["unknown"],
        "uptime_percent": round(100.0 * (stats["up"] + stats["degraded"]) / counted, 3) if counted else None,
        "avg_response_time_ms": round(stats["avg_ms"], 3) if stats["avg_ms"] is not None else None,
        "p95_response_time_ms": round(stats["p95_ms"], 3) if stats["p95_ms"] is not None else None,
    }


def _outage_brief(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "started_at": _iso(row["started_at"]),
        "severity": row["severity"],
        "status": row["status"],
        "error": public_text(row["error"]) if row["error"] else row["error"],
    }
