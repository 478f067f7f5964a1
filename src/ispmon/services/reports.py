"""`ReportService`: a report as JSON, streamed CSV, or PDF, for the API, the CLI and schedules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from ispmon.reports import render_csv, render_pdf
from ispmon.reports.base import ReportKind, ReportQuery, Section, as_dict
from ispmon.store.database import Database
from ispmon.store.reports import cursor_rows


class ReportService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def rows(self, kind: ReportKind | Section, query: ReportQuery) -> AsyncIterator[dict[str, Any]]:
        """The rows (of a kind or of one of its sections) as JSON dicts, read through a server-side cursor."""
        sql, args = kind.sql(query)
        async for record in cursor_rows(self.db.pool, sql, args):
            yield as_dict(kind, record)

    async def document(self, kind: ReportKind, query: ReportQuery) -> dict[str, Any]:
        """The JSON report: period, filters, columns, rows and totals."""
        rows = [r async for r in self.rows(kind, query)]
        doc: dict[str, Any] = {
            "kind": kind.name,
            "title": kind.title,
            "since": query.since.isoformat(),
            "until": query.until.isoformat(),
            "generated_at": datetime.now(UTC).isoformat(),
            "filters": query.filters(),
            "columns": [{"name": c.name, "type": c.type, "description": c.description} for c in kind.columns],
            "rows": rows,
            "totals": kind.totals(rows),
        }
        if kind.sections:
            doc["sections"] = {s.name: await self._section(s, query) for s in kind.sections}
        return doc

    async def _section(self, section: Section, query: ReportQuery) -> dict[str, Any]:
        rows = [r async for r in self.rows(section, query)]
        return {
            "title": section.title,
            "columns": [{"name": c.name, "type": c.type, "description": c.description} for c in section.columns],
            "rows": rows,
            "totals": section.totals(rows),
        }

    def csv(self, kind: ReportKind, query: ReportQuery) -> AsyncIterator[bytes]:
        """The kind's rows, or with ``query.table`` that section's (one table per CSV file)."""
        table: ReportKind | Section = next((s for s in kind.sections if s.name == query.table), kind)
        return render_csv.chunks(table.columns, self.rows(table, query))

    async def pdf(self, kind: ReportKind, query: ReportQuery) -> bytes:
        doc = await self.document(kind, query)
        return await asyncio.to_thread(
            render_pdf.render,
            kind,
            query.since,
            query.until,
            doc["filters"],
            doc["rows"],
            doc["totals"],
            datetime.fromisoformat(doc["generated_at"]),
            doc.get("sections", {}),
        )

    async def render(self, kind: ReportKind, query: ReportQuery, fmt: str) -> bytes:
        """The whole file in memory (the CLI writes it, a schedule attaches it)."""
        if fmt == "pdf":
            return await self.pdf(kind, query)
        if fmt == "csv":
            return b"".join([chunk async for chunk in self.csv(kind, query)])
        return json.dumps(await self.document(kind, query), allow_nan=False).encode()
