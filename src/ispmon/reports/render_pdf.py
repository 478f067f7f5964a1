"""A report as PDF (reportlab: pure Python, no system libraries): a title with the period and
the filters, the totals, native bar charts, and the rows as a table split across pages.

Rendering is CPU work without I/O: callers run it in a thread so the event loop keeps probing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from ispmon.reports.base import Chart, ReportKind

MAX_CELL = 60  # characters per table cell (an error text could be a page long)


def fmt(raw: Any) -> str:
    """A cell: numbers with up to 3 decimals (SLA % with 3: 99.95 is not 100), text clipped."""
    if raw is None:
        return ""
    if isinstance(raw, float):
        return f"{raw:.3f}".rstrip("0").rstrip(".") if abs(raw) < 1e15 else f"{raw:.3e}"
    text = str(raw)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _chart_data(chart: Chart, rows: Sequence[Mapping[str, Any]], totals: Mapping[str, Any]) -> list[tuple[str, float]]:
    if chart.group is not None:
        groups: Mapping[str, Mapping[str, Any]] = totals.get(chart.group) or {}
        pairs = [(str(k), float(v[chart.value])) for k, v in groups.items()]
        pairs.sort(key=lambda p: -p[1])
    else:
        pairs = [(str(r[chart.label]), float(r[chart.value])) for r in rows if r[chart.value] is not None]
    return pairs[: chart.limit]


def _chart(chart: Chart, data: list[tuple[str, float]], width: float) -> Drawing:
    height = 40 + 14 * max(1, len(data))
    drawing = Drawing(width, height)
    drawing.add(String(0, height - 12, chart.title, fontName="Helvetica-Bold", fontSize=10))
    if not data:
        drawing.add(String(0, height - 30, "no data", fontSize=9))
        return drawing
    bars = HorizontalBarChart()
    bars.x, bars.y = 150, 10
    bars.width, bars.height = width - 200, height - 40
    # Top of the chart first, as in the table.
    bars.data = [[v for _, v in reversed(data)]]
    bars.categoryAxis.categoryNames = [fmt(label)[:30] for label, _ in reversed(data)]
    bars.categoryAxis.labels.fontSize = 7
    bars.valueAxis.labels.fontSize = 7
    bars.valueAxis.valueMin = 0
    bars.bars[0].fillColor = colors.HexColor("#3b6ea8")
    drawing.add(bars)
    return drawing


def render(
    kind: ReportKind,
    since: datetime,
    until: datetime,
    filters: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    totals: Mapping[str, Any],
    generated_at: datetime,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    buf = io.BytesIO()
    page = landscape(A4)
    doc = SimpleDocTemplate(
        buf, pagesize=page, leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm, bottomMargin=12 * mm,
        title=f"ispmon {kind.title} report", author="ispmon",
    )  # fmt: skip
    styles = getSampleStyleSheet()
    story: list[Any] = [
        Paragraph(f"{kind.title} report", styles["Title"]),
        Paragraph(
            f"Period {since.isoformat()} to {until.isoformat()} (UTC); generated {generated_at.isoformat()}",
            styles["Normal"],
        ),
    ]
    if filters:
        story.append(Paragraph("Filters: " + ", ".join(f"{k}={v}" for k, v in filters.items()), styles["Normal"]))
    story.append(Spacer(1, 4 * mm))
    story += [_totals(totals), Spacer(1, 4 * mm)]
    width = page[0] - 24 * mm
    for chart in kind.charts:
        story += [_chart(chart, _chart_data(chart, rows, totals), width), Spacer(1, 4 * mm)]
    story.append(_table(kind.pdf_columns or tuple(c.name for c in kind.columns), rows))
    for section in kind.sections:
        # A second table (the network report's latency and loss): its title, totals, charts, rows.
        data = (sections or {}).get(section.name) or {"rows": [], "totals": {}}
        story += [Spacer(1, 6 * mm), Paragraph(section.title, styles["Heading2"])]
        story += [_totals(data["totals"]), Spacer(1, 4 * mm)]
        for chart in section.charts:
            story += [_chart(chart, _chart_data(chart, data["rows"], data["totals"]), width), Spacer(1, 4 * mm)]
        story.append(_table(section.pdf_columns or tuple(c.name for c in section.columns), data["rows"]))
    doc.build(story)
    return buf.getvalue()


def _totals(totals: Mapping[str, Any]) -> LongTable:
    flat = [(k, v) for k, v in totals.items() if not isinstance(v, dict)]
    summary = LongTable([["Total", "Value"], *[[k.replace("_", " "), fmt(v)] for k, v in flat]], hAlign="LEFT")
    summary.setStyle(_style())
    return summary


def _table(names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> LongTable:
    table = LongTable([list(names), *[[fmt(r[n]) for n in names] for r in rows]], repeatRows=1)
    table.setStyle(_style())
    return table


def _style() -> TableStyle:
    return TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), "Helvetica", 7),
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde4ee")),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )
