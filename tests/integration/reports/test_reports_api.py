"""GET /reports/{kind} over the scripted timeline: the SLA % exact with downtime inside and
outside maintenance, the CSV round-trips to the JSON rows exactly, the PDF's text holds the
figures, file names carry kind and period, and bad input is a 4xx naming the field."""

from __future__ import annotations

import io
from typing import Any

import pypdf
import pytest

from ispmon.reports import render_csv
from ispmon.reports.histogram import HALF_WIDTH
from ispmon.reports.kinds import KINDS
from ispmon.store import endpoint_rollups
from ispmon.store.database import Database
from tests.integration.api.documented import assert_documented
from tests.integration.reports.conftest import Client
from tests.integration.reports.timeline import (
    DAY,
    DOWNTIME,
    MAINTENANCE_S,
    SLA_DAY,
    START,
    H,
    nearest_rank,
    script_day,
)

PERIOD = {"since": START.isoformat(), "until": (START + DAY).isoformat()}


async def _ready(db: Database) -> list[float]:
    times = await script_day(db)
    await endpoint_rollups.rollup(db.pool, START + 2 * DAY)
    return times


def _by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["endpoint_id"]: r for r in body["rows"]}


async def test_the_sla_of_a_scripted_day_is_exact(db: Database, client: Client) -> None:
    times = await _ready(db)
    resp = await client.get("/reports/availability", params=PERIOD)
    assert resp.status == 200, await resp.text()
    body = await assert_documented(client, "GET", "/reports/{kind}", resp)
    web = _by_id(body)["web"]
    assert web["period_seconds"] == 86400.0
    assert web["maintenance_seconds"] == MAINTENANCE_S
    assert web["downtime_seconds"] == DOWNTIME
    assert web["sla_percent"] == pytest.approx(SLA_DAY, abs=1e-12)  # 96.7391...
    assert web["outages"] == 2
    assert web["mttr_seconds"] == DOWNTIME / 2
    assert web["mtbf_seconds"] == (86400 - MAINTENANCE_S - DOWNTIME) / 2
    for pct in (50, 95, 99):
        exact = nearest_rank(times, pct)
        assert abs(web[f"response_p{pct}_ms"] - exact) / exact <= HALF_WIDTH
    assert _by_id(body)["dns"]["sla_percent"] == 100.0
    assert body["rows"][0]["endpoint_id"] == "web"  # worst first
    assert resp.headers["Content-Disposition"] == 'inline; filename="ispmon-availability-20260302-20260303.json"'


async def test_a_period_of_hours_is_read_from_the_hourly_rollups(db: Database, client: Client) -> None:
    await _ready(db)
    params = {"since": (START + H).isoformat(), "until": (START + 5 * H).isoformat(), "endpoint": "web"}
    body = await (await client.get("/reports/availability", params=params)).json()
    (web,) = body["rows"]
    # 4 hours, 1 of them maintenance, 2,700 s down outside it: 100 × (14400 - 3600 - 2700) / 10800.
    assert (web["period_seconds"], web["maintenance_seconds"], web["downtime_seconds"]) == (14400.0, 3600.0, 2700.0)
    assert web["sla_percent"] == 75.0
    assert body["filters"] == {"endpoint": "web"}


async def test_filters_by_tag(db: Database, client: Client) -> None:
    await _ready(db)
    body = await (await client.get("/reports/availability", params={**PERIOD, "tag": "core"})).json()
    assert [r["endpoint_id"] for r in body["rows"]] == ["dns"]


async def test_the_csv_round_trips_to_the_json_rows_exactly(db: Database, client: Client) -> None:
    await _ready(db)
    for kind in ("availability", "outages"):
        body = await (await client.get(f"/reports/{kind}", params=PERIOD)).json()
        resp = await client.get(f"/reports/{kind}", params={**PERIOD, "format": "csv"})
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert resp.headers["Content-Disposition"] == f'attachment; filename="ispmon-{kind}-20260302-20260303.csv"'
        rows = render_csv.parse(KINDS[kind].columns, await resp.text())
        assert rows == body["rows"] and rows


async def test_the_outages_report_has_durations_by_severity_and_notes(db: Database, client: Client) -> None:
    await _ready(db)
    resp = await client.get("/reports/outages", params=PERIOD)
    body = await assert_documented(client, "GET", "/reports/{kind}", resp)
    assert [r["duration_seconds"] for r in body["rows"]] == [1800.0, 2700.0]
    assert body["rows"][0]["resolution_notes"] == "fibre cut, spliced"
    assert body["totals"]["by_severity"] == {"high": {"count": 2, "total_seconds": 4500.0, "longest_seconds": 2700.0}}


async def test_the_pdf_holds_the_figures(db: Database, client: Client) -> None:
    await _ready(db)
    resp = await client.get("/reports/availability", params={**PERIOD, "format": "pdf"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="ispmon-availability-20260302-20260303.pdf"'
    reader = pypdf.PdfReader(io.BytesIO(await resp.read()))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "Availability report" in text
    assert f"{SLA_DAY:.3f}" in text  # 96.739
    assert "2700" in text and "3600" in text  # downtime and maintenance seconds of web
    assert "Lowest SLA %" in text  # the chart's title


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/reports/bogus", {}, 404, "kind"),
        ("/reports/availability", {"device": "core-1"}, 400, "device"),
        ("/reports/availability", {"since": "yesterday"}, 400, "since"),
        ("/reports/availability", {"format": "xls"}, 400, "format"),
        ("/reports/availability", {"since": "2026-03-02T05:00Z", "until": "2026-03-02T05:30Z"}, 400, "until"),
        ("/reports/availability", {"since": "2000-01-01T00:00Z", "until": "2026-03-02T00:00Z"}, 400, "since"),
        ("/reports/outages", {"colour": "red"}, 400, "colour"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    client: Client, path: str, params: dict[str, str], status: int, field: str
) -> None:
    resp = await client.get(path, params=params)
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["field"] == field, body


async def test_whole_weeks_come_from_week_rows_with_the_same_figures(db: Database, client: Client) -> None:
    await script_day(db, days=15)  # START is a Monday: two whole weeks and a day
    await endpoint_rollups.rollup(db.pool, START + 16 * DAY)
    weeks = await db.pool.fetch(
        "SELECT bucket, downtime_s, checks FROM endpoint_rollups WHERE step_s = 604800 AND endpoint_id = 'web'"
        " ORDER BY bucket"
    )
    assert [(r["bucket"], r["downtime_s"], r["checks"]) for r in weeks] == [
        (START, DOWNTIME, 7 * 1440),
        (START + 7 * DAY, 0.0, 7 * 1440),
    ]
    params = {"since": (START + 5 * H).isoformat(), "until": (START + 15 * DAY).isoformat()}
    from_weeks = (await (await client.get("/reports/availability", params=params)).json())["rows"]
    # The week row is what the report reads for the second week: a change to it shows.
    await db.pool.execute(
        "UPDATE endpoint_rollups SET checks = checks + 1 WHERE step_s = 604800 AND bucket = $1", START + 7 * DAY
    )
    marked = (await (await client.get("/reports/availability", params=params)).json())["rows"]
    assert _by_id({"rows": marked})["web"]["checks"] == _by_id({"rows": from_weeks})["web"]["checks"] + 1
    await db.pool.execute("DELETE FROM endpoint_rollup_progress WHERE step_s = 604800")  # days and hours only
    from_days = (await (await client.get("/reports/availability", params=params)).json())["rows"]
    assert from_weeks == from_days
    web = _by_id({"rows": from_weeks})["web"]
    # From 05:00 on day 1: 900 s of outage B (04:00-04:15) is before the period, maintenance too.
    assert (web["downtime_seconds"], web["maintenance_seconds"]) == (0.0, 0.0)
    assert web["checks"] == 15 * 1440 - 5 * 60
