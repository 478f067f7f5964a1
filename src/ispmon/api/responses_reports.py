"""The exact JSON schema of ``GET /reports/{kind}``: one closed object per kind, derived from the
kind's typed columns and its totals schema, so a column added to a kind is documented with it."""

from __future__ import annotations

from typing import Any

from ispmon.reports.base import FILTERS, Column, ReportKind, Section
from ispmon.reports.kinds import KINDS

_TYPES = {"string": "string", "integer": "integer", "number": "number", "date-time": "string"}


def _column(column: Column) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [_TYPES[column.type], "null"] if column.nullable else _TYPES[column.type]}
    if column.type == "date-time":
        schema["format"] = "date-time"
    schema["description"] = column.description
    return schema


def _row(columns: tuple[Column, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [c.name for c in columns],
        "properties": {c.name: _column(c) for c in columns},
    }


def _section(section: Section) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["title", "columns", "rows", "totals"],
        "properties": {
            "title": {"type": "string"},
            "columns": COLUMNS,
            "rows": {"type": "array", "items": _row(section.columns)},
            "totals": section.totals_schema,
        },
    }


COLUMNS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "type", "description"],
        "properties": {
            "name": {"type": "string"},
            "type": {"enum": ["string", "integer", "number", "date-time"]},
            "description": {"type": "string"},
        },
    },
}


def report_schema(kind: ReportKind) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "title": f"{kind.title.replace(' ', '')}Report",
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "title", "since", "until", "generated_at", "filters", "columns", "rows", "totals"],
        "properties": {
            "kind": {"const": kind.name},
            "title": {"type": "string"},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "generated_at": {"type": "string", "format": "date-time"},
            "filters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {name: {"type": "string"} for name in FILTERS},
            },
            "columns": COLUMNS,
            "rows": {"type": "array", "items": _row(kind.columns)},
            "totals": kind.totals_schema,
        },
    }
    if kind.sections:  # the kind's other tables, each required: {name: {title, columns, rows, totals}}
        names = [s.name for s in kind.sections]
        schema["required"] = [*schema["required"], "sections"]
        schema["properties"]["sections"] = {
            "type": "object",
            "additionalProperties": False,
            "required": names,
            "properties": {s.name: _section(s) for s in kind.sections},
        }
    return schema


REPORT: dict[str, Any] = {"oneOf": [report_schema(k) for k in KINDS.values()]}
CSV_SCHEMA: dict[str, Any] = {"type": "string", "description": "A header of column names, one line per row"}
PDF_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}
