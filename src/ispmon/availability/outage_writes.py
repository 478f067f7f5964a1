"""The monitor's outage rows: open, resolve and update them, and replay what could not be written
while the database was unreachable (kept on the endpoint's runtime, retried before its next check).
Mixed into `Monitor`."""

from __future__ import annotations

from typing import Any

import structlog

from ispmon.availability.outages import OutageDeclared, OutageResolved, with_outage_id
from ispmon.store.outages import OutageRepo

log = structlog.get_logger("ispmon.availability.monitor")


class OutageWrites:
    outages: OutageRepo
    alerts: Any
    agent_id: str | None
    location: str | None

    async def _outage_closed_by_store(self, endpoint_id: str, outage_id: int) -> None:
        """Resolve the alerts of an outage that the store closed by hand."""
        assert self.alerts is not None
        try:
            row = await self.outages.get(outage_id)
        except Exception as exc:  # the alert engine's start-up reconcile repairs it
            log.error("outage_read_failed", endpoint_id=endpoint_id, outage_id=outage_id, error=str(exc))
            return
        if row is not None and row["resolved_at"] is not None:
            await self.alerts.outage_resolved(
                endpoint_id, outage_id, row["resolved_at"], row["duration_seconds"] or 0.0, "manual"
            )

    async def _replay_pending(self, runtime: Any) -> None:
        """Outage writes that failed while the database was unreachable, in the order that keeps
        the rows right: close an older stored outage, apply pending severity/flapping changes, open
        a pending one, then close it if it was already over before it could be stored."""
        pending = runtime.pending_resolve
        if pending is not None and pending[1] is not None:
            await self._resolve_outage(runtime, *pending)
        if runtime.pending_update is not None:
            await self._update_outage(runtime, *runtime.pending_update)
        if runtime.pending_declare is not None:
            await self._open_outage(runtime, runtime.pending_declare)
        pending = runtime.pending_resolve
        if pending is not None and pending[1] is None and runtime.pending_declare is None:
            await self._resolve_outage(runtime, *pending)

    async def _open_outage(self, runtime: Any, event: OutageDeclared) -> None:
        spec = runtime.spec
        try:
            outage_id, created = await self.outages.open(
                spec.id,
                started_at=event.started_at,
                declared_at=event.declared_at,
                status=event.status.value,
                severity=event.severity.value,
                error_kind=event.error_kind,
                error=event.error,
                failures=event.failures,
                verified=event.verified,
                flapping=runtime.state.flapping,
                event=(event.kind, event.occurred_at, event.as_dict()),
                agent_id=self.agent_id,
                location=self.location,
            )
        except Exception as exc:
            runtime.pending_declare = event
            log.error("outage_store_failed", endpoint_id=spec.id, error=str(exc))
            return
        runtime.pending_declare = None
        runtime.state = with_outage_id(runtime.state, outage_id)
        if created:
            log.warning(
                "outage_declared",
                endpoint_id=spec.id,
                outage_id=outage_id,
                severity=event.severity.value,
                status=event.status.value,
                started_at=event.started_at.isoformat(),
                failures=event.failures,
                verified=event.verified,
                error_kind=event.error_kind,
                error=event.error,
            )
            if self.alerts is not None:
                await self.alerts.outage_declared(spec, event, outage_id)
        else:
            log.info("outage_already_open", endpoint_id=spec.id, outage_id=outage_id)

    async def _resolve_outage(self, runtime: Any, event: OutageResolved, outage_id: int | None) -> None:
        spec = runtime.spec
        row = None
        try:
            if outage_id is None:
                # Opened while the database was unreachable and written later: find it by endpoint.
                open_rows = await self.outages.list(endpoint_id=spec.id, active=True, limit=1)
                outage_id = open_rows[0]["id"] if open_rows else None
            if outage_id is not None:
                row = await self.outages.resolve(
                    outage_id,
                    resolved_at=event.resolved_at,
                    resolution="auto",
                    event=(event.kind, event.occurred_at, event.as_dict()),
                )
        except Exception as exc:
            # Kept and retried: otherwise the row stays open while the target is up, and the next
            # outage of this endpoint would find it and be merged into it.
            runtime.pending_resolve = (event, outage_id)
            log.error("outage_resolve_store_failed", endpoint_id=spec.id, error=str(exc))
            return
        runtime.pending_resolve = None
        if row is None:
            return  # already resolved by an operator through the API
        log.warning(
            "outage_resolved",
            endpoint_id=spec.id,
            outage_id=outage_id,
            duration_seconds=round(event.duration_seconds, 3),
            severity=event.severity.value,
        )
        if self.alerts is not None and outage_id is not None:
            await self.alerts.outage_resolved(spec.id, outage_id, event.resolved_at, event.duration_seconds)

    async def _update_outage(self, runtime: Any, outage_id: int, fields: dict[str, Any]) -> None:
        pending = runtime.pending_update
        if pending is not None and pending[0] == outage_id:
            fields = {**pending[1], **fields}
        fields = {k: v for k, v in fields.items() if v is not None}
        try:
            await self.outages.update(outage_id, **fields)
        except Exception as exc:
            # Kept and retried before the next check: the stored severity is what reports show.
            runtime.pending_update = (outage_id, fields)
            log.error(
                "outage_update_failed", endpoint_id=runtime.spec.id, outage_id=outage_id, error=str(exc)
            )
            return
        runtime.pending_update = None
