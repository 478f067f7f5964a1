"""[[report_schedules]]: bad tables named by key, and when a schedule fires and which period it
reports (monthly, weekly, cron, time zones, a firing missed while the daemon was down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ispmon.config import load_config
from ispmon.errors import ConfigError
from ispmon.reports.schedules import ReportSchedule, due

BASE = '[channels]\nmgmt = "mailto://a@example.net"\n[[report_schedules]]\nid = "sla"\n'
OK = 'kind = "availability"\nchannels = ["mgmt"]\n'
INVALID = {
    "no_when": (OK, "report_schedules[0]: give exactly one of cron, monthly or weekly"),
    "two_whens": (
        OK + 'monthly = 1\nweekly = "mon"\n',
        "report_schedules[0]: give exactly one of cron, monthly or weekly (got monthly, weekly)",
    ),
    "bad_cron": (
        OK + 'cron = "61 * * * *"\nperiod = "day"\n',
        "report_schedules[0].cron: '61 * * * *' is not a cron expression of 5 fields (minute hour day month weekday)",
    ),
    "cron_no_period": (
        OK + 'cron = "0 6 * * *"\n',
        "report_schedules[0].period: required with cron (day, week or month)",
    ),
    "bad_kind": (
        'kind = "sales"\nmonthly = 1\nchannels = ["mgmt"]\n',
        "report_schedules[0].kind: no report kind 'sales' (kinds: availability, outages, network, usage, alerts)",
    ),
    "bad_channel": (
        'kind = "availability"\nmonthly = 1\nchannels = ["boss"]\n',
        "report_schedules[0].channels[0]: no channel 'boss' in [channels] (mgmt)",
    ),
    "bad_tz": (
        OK + 'monthly = 1\ntimezone = "Mars/Olympus"\n',
        "report_schedules[0].timezone: unknown time zone 'Mars/Olympus' (an IANA name, e.g. Europe/Berlin)",
    ),
    "bad_at": (OK + 'weekly = "mon"\nat = "25:00"\n', "report_schedules[0].at: must be HH:MM (24-hour), e.g. 06:00"),
    "bad_format": (
        OK + 'monthly = 1\nformat = "xls"\n',
        "report_schedules[0].format: Input should be 'json', 'csv' or 'pdf'",
    ),
    "duplicate": (
        OK + 'monthly = 1\n[[report_schedules]]\nid = "sla"\nkind = "outages"\nweekly = "mon"\nchannels = ["mgmt"]\n',
        "report_schedules[1].id: duplicate id 'sla' (also report_schedules[0])",
    ),
    "unknown_key": (OK + "monthly = 1\nbogus = 1\n", "report_schedules[0].bogus: unknown field"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_a_bad_schedule_is_named_by_its_key(name: str, tmp_path: Path) -> None:
    text, expected = INVALID[name]
    path = tmp_path / "c.toml"
    path.write_text(BASE + text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.errors == [f"{path}: {expected}"]


def test_a_good_schedule_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + OK + 'monthly = 1\nat = "07:30"\ntag = "edge"\n')
    (schedule,) = load_config(path).report_schedules
    got = (schedule.period, schedule.cron_expr(), schedule.format, schedule.tag)
    assert got == ("month", "30 7 1 * *", "pdf", "edge")


def _s(**kw: object) -> ReportSchedule:
    return ReportSchedule.model_validate({"id": "sla", "kind": "availability", "channels": ["mgmt"], **kw})


def test_monthly_reports_the_previous_month_from_its_firing_on() -> None:
    s = _s(monthly=1)
    assert due(s, datetime(2026, 12, 1, 5, 59, tzinfo=UTC)) is None  # November's firing was a month ago
    fired = datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert due(s, fired) == (fired, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    # Made up after a restart within a day; skipped after that.
    assert due(s, fired + timedelta(hours=23)) is not None
    assert due(s, fired + timedelta(hours=25)) is None


def test_weekly_reports_monday_to_monday_and_a_time_zone_moves_the_bounds() -> None:
    s = _s(weekly="mon", at="08:00", timezone="Europe/Berlin")
    now = datetime(2026, 12, 7, 7, 5, tzinfo=UTC)  # Monday 08:05 in Berlin (UTC+1)
    fired, start, end = due(s, now) or (None, None, None)
    assert fired == datetime(2026, 12, 7, 7, tzinfo=UTC)
    assert (start, end) == (datetime(2026, 11, 29, 23, tzinfo=UTC), datetime(2026, 12, 6, 23, tzinfo=UTC))


def test_cron_with_a_daily_period() -> None:
    s = _s(cron="15 0 * * *", period="day", format="csv")
    assert due(s, datetime(2026, 12, 2, 0, 20, tzinfo=UTC)) == (
        datetime(2026, 12, 2, 0, 15, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 2, tzinfo=UTC),
    )


def test_the_readme_schedule_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Reports\n") :]
    start = section.index("```toml\n") + len("```toml\n")
    path = tmp_path / "reports.toml"
    path.write_text(section[start : section.index("```", start)], encoding="utf-8")
    (schedule,) = load_config(path).report_schedules
    assert (schedule.id, schedule.period, schedule.cron_expr(), schedule.timezone) == (
        "monthly-sla", "month", "0 6 1 * *", "Europe/Berlin"
    )
