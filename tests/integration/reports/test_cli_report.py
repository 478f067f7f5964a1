"""`ispmon report` in a fresh process against a real database: the file it writes holds the same
figures as the API, CSV round-trips, and bad options exit 2 naming the option."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pypdf

from ispmon.reports import render_csv
from ispmon.reports.kinds import KINDS
from ispmon.store.database import Database
from tests.integration.reports.timeline import DAY, DOWNTIME, SLA_DAY, START, script_day


def _env(db_dsn: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": db_dsn}
    env.pop("ISPMON_CONFIG", None)
    # The command runs in `cwd` (it writes its file there): a relative PYTHONPATH must stay valid.
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


async def _report(db_dsn: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env(db_dsn)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ispmon", "report", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_cli_writes_csv_and_pdf_files_named_by_kind_and_period(
    db: Database, db_dsn: str, tmp_path: Path
) -> None:
    await script_day(db)  # not rolled up yet: the command catches the rollups up itself
    period = ("--since", START.isoformat(), "--until", (START + DAY).isoformat())
    done = await _report(db_dsn, tmp_path, "availability", *period, "--format", "csv", "--tag", "edge")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ispmon-availability-20260302-20260303.csv"
    (web,) = render_csv.parse(KINDS["availability"].columns, (tmp_path / done.stdout.strip()).read_text())
    assert (web["endpoint_id"], web["downtime_seconds"], web["sla_percent"]) == ("web", DOWNTIME, SLA_DAY)

    out = tmp_path / "sla.pdf"
    done = await _report(db_dsn, tmp_path, "availability", *period, "-f", "pdf", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(out.read_bytes())).pages)
    assert f"{SLA_DAY:.3f}" in text


async def test_bad_options_exit_2_naming_the_option(db_dsn: str, tmp_path: Path) -> None:
    for args, said in [
        (("sales",), "kind: no report kind 'sales'"),
        (("availability", "--device", "core-1"), "--device: the availability report has no device filter"),
    ]:
        done = await _report(db_dsn, tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)


async def test_the_cli_writes_the_network_reports_latency_table(db: Database, db_dsn: str, tmp_path: Path) -> None:
    await db.pool.execute(
        "INSERT INTO endpoints (id, name, protocol, url, spec) VALUES ('gw', 'Gateway', 'icmp', '192.0.2.9', '{}')"
    )
    await db.pool.execute(
        "INSERT INTO status_history (endpoint_id, checked_at, status, details) VALUES ('gw', $1, 'up', $2)",
        START,
        {"packets_sent": 4, "packets_received": 3, "rtts_ms": [10, 20, 30]},
    )
    period = ("--since", START.isoformat(), "--until", (START + DAY).isoformat())
    done = await _report(db_dsn, tmp_path, "network", *period, "-f", "csv", "--table", "latency")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ispmon-network-latency-20260302-20260303.csv"
    columns = KINDS["network"].sections[0].columns
    (gw,) = render_csv.parse(columns, (tmp_path / done.stdout.strip()).read_text())
    assert (gw["packets_sent"], gw["packets_received"], gw["loss_pct"], gw["rtt_median_ms"]) == (4, 3, 25.0, 20.0)
    done = await _report(db_dsn, tmp_path, "network", *period, "-f", "csv", "--table", "routes")
    assert done.returncode == 2 and "--table: the network report has no table 'routes'" in done.stderr
