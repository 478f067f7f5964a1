"""Flow exporters and traffic queries (top talkers, series, a customer's traffic), validated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ispmon.flows.decode import FlowDecoder
from ispmon.flows.exporters import ExporterSpec
from ispmon.services.errors import InvalidInput, NotFoundError, ServiceError
from ispmon.store.flow_records import FlowRecordStore
from ispmon.store.flows import TOP_BY, FlowStore
from ispmon.validation import error_list

if TYPE_CHECKING:
    from ispmon.flows.collector import Collector
    from ispmon.store.database import Database

TOP_KEYS = (*TOP_BY, "customer")
MAX_POINTS = 10_000
# filters of GET /flows/series: query name -> (column, converter)
SERIES_FILTERS: dict[str, tuple[str, type]] = {
    "exporter": ("exporter_id", str),
    "customer": ("customer", str),  # either side (FlowStore.series)
    "src_prefix": ("src_prefix", str),
    "dst_prefix": ("dst_prefix", str),
    "protocol": ("proto", int),
    "port": ("port", int),
    "in_if": ("in_if", int),
    "out_if": ("out_if", int),
}


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC)
    since = since or until - timedelta(hours=1)
    if until <= since:
        raise ServiceError("must be after since", field="until")
    return since, until


class FlowService:
    def __init__(
        self, db: Database, decoder: FlowDecoder | None = None, collector: Collector | None = None
    ) -> None:
        self.store = FlowStore(db.pool)
        self.records = FlowRecordStore(db.pool)
        self.decoder = decoder
        self.collector = collector

    async def list_exporters(self) -> dict[str, Any]:
        rows = await self.store.exporters()
        live = {s.exporter_id: s for s in self.decoder.exporters.values()} if self.decoder else {}
        for row in rows:
            state = live.get(row["id"])
            row["stats"] = state.counters() if state else None
        unknown = {
            "packets": self.decoder.unknown_packets if self.decoder else 0,
            "sources": len(self.decoder.unknown_sources) if self.decoder else 0,
        }
        collector = self.collector.counters() if self.collector is not None else None
        return {"items": rows, "unknown_exporters": unknown, "collector": collector}

    async def add_exporter(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            spec = ExporterSpec.model_validate(body)
        except ValidationError as exc:
            raise InvalidInput(error_list(exc)) from None
        if await self.store.address_taken(spec.address, spec.id):
            raise ServiceError("another exporter has this address", field="address")
        await self.store.put_exporter(spec.model_dump())
        if self.decoder is not None:
            self.decoder.forget(spec.id)
            self.decoder.declare(spec.id, spec.address, spec.sampling)
        return spec.model_dump()

    async def delete_exporter(self, exporter_id: str) -> None:
        if not await self.store.delete_exporter(exporter_id):
            raise NotFoundError("flow exporter", exporter_id)
        if self.decoder is not None:
            self.decoder.forget(exporter_id)

    async def top(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        by: str = "dst",
        limit: int = 10,
    ) -> dict[str, Any]:
        since, until = window(since, until)
        if by not in TOP_KEYS:
            raise ServiceError(f"must be one of {', '.join(TOP_KEYS)}", field="by")
        items = await self.store.top(since, until, by, limit)
        return {"by": by, "since": since, "until": until, "items": items}

    async def series(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        step: int = 60,
        filters: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        since, until = window(since, until)
        if step % 60:
            raise ServiceError("must be a multiple of 60 seconds", field="step")
        if (until - since).total_seconds() / step > MAX_POINTS:
            raise ServiceError(f"more than {MAX_POINTS} steps: use a longer step", field="step")
        where: dict[str, Any] = {}
        for name, raw in (filters or {}).items():
            column, convert = SERIES_FILTERS[name]
            try:
                where[column] = convert(raw)
            except ValueError:
                raise ServiceError("must be an integer", field=name) from None
        items = await self.store.series(since, until, step, where)
        return {"since": since, "until": until, "step": step, "items": items}

    async def customer_traffic(
        self, customer_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        since, until = window(since, until)
        if not await self.store.pool.fetchval("SELECT true FROM customers WHERE id = $1", customer_id):
            raise NotFoundError("customer", customer_id)
        traffic = await self.store.customer_traffic(customer_id, since, until)
        return {"customer_id": customer_id, "since": since, "until": until, **traffic}

    async def list_records(self, **query: Any) -> list[dict[str, Any]]:
        """Raw flow records (kept only when FLOW_RAW_HOURS > 0), newest first; `query` by RECORD_LIST."""
        rows = await self.records.list(**query)
        return [{**r, "at": r["at"].isoformat()} for r in rows]
