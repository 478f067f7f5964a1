"""CSV of a report's rows, one chunk per batch of rows, so a year of rows never sits in memory.

A header of the column names, then one line per row; an empty field is null, numbers are written
as Python's shortest round-trip form (`repr`), so `parse` gives back exactly the JSON values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from ispmon.reports.base import Column


def _cell(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, float):
        return repr(raw)
    return str(raw)


def header(columns: Iterable[Column]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([c.name for c in columns])
    return buf.getvalue().encode()


def lines(columns: tuple[Column, ...], rows: Iterable[Mapping[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(row[c.name]) for c in columns])
    return buf.getvalue().encode()


async def chunks(
    columns: tuple[Column, ...], rows: AsyncIterator[Mapping[str, Any]], batch: int = 500
) -> AsyncIterator[bytes]:
    yield header(columns)
    pending: list[Mapping[str, Any]] = []
    async for row in rows:
        pending.append(row)
        if len(pending) >= batch:
            yield lines(columns, pending)
            pending = []
    if pending:
        yield lines(columns, pending)


def parse(columns: tuple[Column, ...], text: str) -> list[dict[str, Any]]:
    """The rows of a CSV this module wrote, typed again (what a test or a script reads back)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    names = next(reader)
    if names != [c.name for c in columns]:
        raise ValueError(f"unexpected header {names}")
    out = []
    for line in reader:
        row: dict[str, Any] = {}
        for c, cell in zip(columns, line, strict=True):
            if cell == "":
                row[c.name] = None if c.nullable or c.type != "string" else ""
            elif c.type == "integer":
                row[c.name] = int(cell)
            elif c.type == "number":
                row[c.name] = float(cell)
            elif c.type == "date-time":
                row[c.name] = datetime.fromisoformat(cell).isoformat()
            else:
                row[c.name] = cell
        out.append(row)
    return out
