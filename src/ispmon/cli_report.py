"""`ispmon report <kind>`: a report over a period written to a file (or stdout), from the same
database and code as ``GET /reports/{kind}``. The rollups are caught up first (idempotent), so a
report is current even while the daemon is stopped. Exit 2 on bad input, naming the option."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ispmon.cli_support import load, run_coro, setup_logging
from ispmon.reports.base import FILTERS, FORMATS, file_name
from ispmon.reports.kinds import KINDS

EXIT_USAGE = 2


def add_report(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    report = with_config(sub.add_parser("report", help="write a report (availability, outages, ...) to a file"))
    report.add_argument("kind", help=f"one of: {', '.join(KINDS)}")
    report.add_argument("--since", help="start, ISO 8601 (UTC without an offset); default 30 days before until")
    report.add_argument("--until", help="end, exclusive; default the start of this hour")
    report.add_argument("--format", "-f", default="json", help=f"{', '.join(FORMATS)} (default json)")
    report.add_argument("--output", "-o", help="file to write ('-' for stdout); default the report's file name")
    for name in FILTERS:
        report.add_argument(f"--{name}", help=f"only this {name}")
    report.add_argument("--top", type=int, default=100, help="rows of a top-N report (usage)")
    report.add_argument("--table", help="CSV of the kind's other table instead of its rows (network: latency)")
    report.set_defaults(func=cmd_report)


def _fail(field: str, message: str) -> int:
    print(f"ispmon report: {field}: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_report(args: argparse.Namespace) -> int:
    from ispmon.api.spec import parse_datetime
    from ispmon.reports import query as report_query

    if args.format not in FORMATS:
        return _fail("--format", f"must be one of {', '.join(FORMATS)}")
    try:
        kind = report_query.kind_named(args.kind)
    except report_query.QueryError as exc:
        return _fail(exc.field, exc.message)
    times = {}
    for name in ("since", "until"):
        raw = getattr(args, name)
        try:
            times[name] = parse_datetime(raw) if raw else None
        except ValueError as exc:
            return _fail(f"--{name}", str(exc))
    since, until = times["since"], times["until"]
    try:
        query = report_query.build(
            kind, since, until, {n: getattr(args, n) for n in FILTERS}, top=args.top, table=args.table
        )
    except report_query.QueryError as exc:
        return _fail(f"--{exc.field}", exc.message)
    config = load(args)
    setup_logging(config, level="error")
    target = args.output or file_name(kind.name, query.since, query.until, args.format, query.table)

    out: BinaryIO = sys.stdout.buffer if target == "-" else Path(target).open("wb")  # noqa: SIM115

    async def go() -> int:
        from ispmon.daemon import open_database
        from ispmon.services.reports import ReportService
        from ispmon.store import endpoint_rollups

        db, embedded = await open_database(config.settings)
        try:
            await endpoint_rollups.rollup(db.pool)
            service = ReportService(db)
            if args.format == "csv":
                async for chunk in service.csv(kind, query):
                    out.write(chunk)
            else:
                out.write(await service.render(kind, query, args.format))
        finally:
            await db.close()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
        return 0

    try:
        code = run_coro(go())
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if target != "-":
        print(target)
    return code
