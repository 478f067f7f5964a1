"""The `ispmon` command: run | migrate | validate | check | db-url | notify-test | snmp-walk | report |
es-setup | version.

Exit codes of `ispmon check` follow the Nagios plugin convention that ISP tooling already speaks:
0 UP, 1 DEGRADED, 2 DOWN (CRITICAL), 3 UNKNOWN (or MAINTENANCE) -- and 3 for anything that keeps
it from giving a result (a usage error, an unknown endpoint id, a bad URL or option, a config
error), with one line on stdout, where a monitoring system reads it. Every other command exits 2
on a configuration error, with one line per error, each naming its key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ispmon import __version__
from ispmon.availability.endpoints import SLUG_RE, EndpointSpec, build_endpoint, infer_protocol
from ispmon.cli_db import cmd_db_url, cmd_migrate
from ispmon.cli_kibana import add_kibana_import
from ispmon.cli_report import add_report
from ispmon.cli_snmp import add_snmp_walk
from ispmon.cli_support import EXIT_CODES, EXIT_CONFIG, EXIT_UNKNOWN, Parser
from ispmon.cli_support import load as _load
from ispmon.cli_support import run_coro as _run
from ispmon.cli_support import setup_logging as _setup_logging
from ispmon.cli_support import unknown_line as _unknown_line
from ispmon.config import LoadedConfig
from ispmon.errors import ConfigError, StartupError
from ispmon.search.cli import add_es_setup
from ispmon.store.database import DatabaseUnavailable
from ispmon.validation import error_list, format_errors


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    _setup_logging(config)
    from ispmon.daemon import run_daemon

    return _run(run_daemon(config))


async def _endpoint_from_database(config: LoadedConfig, endpoint_id: str) -> EndpointSpec | None:
    settings = config.settings
    if not settings.database_url and not (settings.ispmon_state_dir / "postgres" / "PG_VERSION").exists():
        return None  # no database has ever been created here; do not create one for a lookup
    from ispmon.daemon import open_database

    db, embedded = await open_database(settings)
    try:
        row = await db.endpoints.get(endpoint_id)
        return build_endpoint(row["spec"], settings.endpoint_defaults, stored=True) if row else None
    finally:
        await db.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _resolve_target(config: LoadedConfig, args: argparse.Namespace) -> EndpointSpec:
    target: str = args.target
    for spec in config.endpoints:
        if spec.id == target:
            return spec
    looks_like_id = SLUG_RE.match(target) is not None and args.protocol is None
    if looks_like_id:
        spec = await _endpoint_from_database(config, target)
        if spec is not None:
            return spec
    inferred = infer_protocol(target)
    protocol = args.protocol or (inferred.value if inferred else None)
    if protocol is None:
        hint = " (no endpoint with that id either)" if looks_like_id else ""
        raise ConfigError(
            f"target: cannot tell the protocol of {target!r}{hint}; use a URL (http://, https://, dns://, "
            "tcp://, udp://, icmp://) or --protocol"
        )
    data: dict[str, Any] = {"id": "cli-check", "name": target, "url": target, "protocol": protocol}
    if args.timeout is not None:
        data["timeout"] = args.timeout
        data["check_interval"] = max(60.0, args.timeout * 2)
    if args.retries is not None:
        data["retries"] = args.retries
    if protocol == "udp":
        data["send"] = args.send or "\n"
    elif args.send is not None:
        data["send"] = args.send
    try:
        return build_endpoint(data, config.settings.endpoint_defaults)
    except ValidationError as exc:
        raise ConfigError(format_errors(error_list(exc))) from None


def cmd_check(args: argparse.Namespace) -> int:
    """Probe once. Anything that keeps it from probing is UNKNOWN (3), never CRITICAL (2)."""
    try:
        config = _load(args)
        _setup_logging(config, level="warning")
        return _run(_check(config, args))
    except (ConfigError, StartupError) as exc:
        sys.stdout.write(_unknown_line(f"ispmon check: {exc}"))
        return EXIT_UNKNOWN


async def _check(config: LoadedConfig, args: argparse.Namespace) -> int:
    """Resolve the target, probe it once, print the result; the exit code is its status."""
    from ispmon.probes.base import ProbeContext, run_check

    spec = await _resolve_target(config, args)
    ctx = ProbeContext()
    try:
        result = await run_check(spec, ctx)
    finally:
        await ctx.close()
    if args.json:
        print(
            json.dumps(
                {
                    "endpoint_id": spec.id if spec.id != "cli-check" else None,
                    "url": spec.url,
                    "protocol": spec.protocol.value,
                    **result.as_dict(),
                },
                default=str,
            )
        )
    else:
        rt = f"{result.response_time_ms:.1f} ms" if result.response_time_ms is not None else "-"
        line = f"{result.status.value.upper():<9} {spec.protocol.value} {spec.url}  {rt}"
        if result.error_kind:
            line += f"  [{result.error_kind.value}] {result.error}"
        print(line)
        for key, value in result.details.items():
            print(f"  {key}: {value}")
    return EXIT_CODES.get(result.status, EXIT_UNKNOWN)


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send a test message to a channel: one from the config file directly, else (a channel
    registered through the API) through the running daemon. Exit 0 when every URL took it."""
    config = _load(args)
    _setup_logging(config, level="error")

    async def go() -> int:
        from ispmon.alerts.config import AlertConfig

        alerting: AlertConfig = config.alerting or AlertConfig()
        channel = next((c for c in alerting.channels if c.name == args.channel), None)
        if channel is not None:
            from ispmon.alerts.notifier import AppriseNotifier
            from ispmon.services.alerts import send_test

            outcome = await send_test(channel, AppriseNotifier(timeout=config.settings.alert_send_timeout))
        else:
            outcome = await _notify_test_via_api(config, args.channel)
            if outcome is None:
                return EXIT_CONFIG
        for target in outcome["targets"]:
            status = "OK  " if target["ok"] else "FAIL"
            line = f"{status} {outcome['channel']} {target['kind']:<8} {target['url']}"
            print(line + (f"  {target['error']}" if target["error"] else ""))
        return 0 if outcome["ok"] else 1

    return _run(go())


async def _notify_test_via_api(config: LoadedConfig, channel: str) -> dict[str, Any] | None:
    import aiohttp

    settings = config.settings
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    url = f"http://{host}:{settings.api_port}/channels/{channel}/test"
    headers = {"Authorization": f"Bearer {settings.ispmon_api_token}"} if settings.ispmon_api_token else {}
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.alert_send_timeout * 4)
            ) as session,
            session.post(url, headers=headers) as resp,
        ):
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(
            f"ispmon: channel {channel!r} is not in the config file, and the daemon's API at "
            f"{host}:{settings.api_port} (for channels registered through it) did not answer: {exc}",
            file=sys.stderr,
        )
        return None
    if resp.status != 200:
        message = body.get("message", body) if isinstance(body, dict) else body
        print(f"ispmon: channel {channel!r}: {message}", file=sys.stderr)
        return None
    result: dict[str, Any] = body
    return result


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def cmd_validate(args: argparse.Namespace) -> int:
    """Load the settings and the file as `ispmon run` would, without probing or starting anything.

    Errors reach `main` as one ConfigError (one line each, exit 2). Warnings go to stderr: default
    channels the file does not define and, when a database is already running (it is never
    started or changed here), API-created endpoints whose ids the file declares."""
    config = _load(args)
    warnings = list(config.alerting.warnings) if config.alerting is not None else []
    if not args.offline and config.endpoints:
        warnings += _run(_takeover_warnings(config))
    for warning in warnings:
        print(f"ispmon: warning: {warning}", file=sys.stderr)
    if config.path is None:
        print("ok: settings (no config file: give --config or set ISPMON_CONFIG)")
        return 0
    alerting = config.alerting
    counts = [
        _plural(len(config.endpoints), "endpoint"),
        _plural(len(config.maintenance), "maintenance window"),
        _plural(len(alerting.channels) if alerting else 0, "channel"),
        _plural(len(alerting.rules) if alerting else 0, "alert rule"),
        _plural(len(alerting.policies) if alerting else 0, "escalation policy").replace(
            "policys", "policies"
        ),
    ]
    print(f"ok: {config.path}: {', '.join(counts)}")
    return 0


async def _takeover_warnings(config: LoadedConfig) -> list[str]:
    """File endpoints whose ids exist in the database as API-created ones, when a database can be
    read without starting one: DATABASE_URL, or an embedded server that runs now. Read only."""
    from ispmon.store.db import create_pool
    from ispmon.store.embedded import EmbeddedPostgres

    settings = config.settings
    try:
        dsn = settings.database_url or EmbeddedPostgres(settings.ispmon_state_dir).running_uri()
    except PermissionError:
        return []
    if dsn is None:
        return []
    ids = [e.id for e in config.endpoints]
    try:
        pool = await asyncio.wait_for(create_pool(dsn, min_size=1, max_size=1), timeout=5)
    except Exception as exc:  # unreachable, refused, no such database: the file itself is still fine
        return [f"database not checked for endpoints the file would take over ({type(exc).__name__})"]
    try:
        rows = await pool.fetch("SELECT id FROM endpoints WHERE source = 'api' AND id = ANY($1::text[])", ids)
    except Exception as exc:  # e.g. a database without ispmon's schema yet
        return [f"database not checked for endpoints the file would take over ({type(exc).__name__})"]
    finally:
        await pool.close()
    api_ids = {r["id"] for r in rows}
    return [
        f"{config.path}: endpoints[{index}].id: {spec.id!r} was created through the API; the file takes it "
        "over at the next start or reload (then the API can no longer change or delete it)"
        for index, spec in enumerate(config.endpoints)
        if spec.id in api_ids
    ]


def cmd_version(args: argparse.Namespace) -> int:
    print(f"ispmon {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ispmon", description="Service availability monitoring for ISPs.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", type=Path, default=None, help="TOML config file (or ISPMON_CONFIG)")
        return p

    with_config(sub.add_parser("run", help="run the daemon")).set_defaults(func=cmd_run)
    with_config(sub.add_parser("migrate", help="apply the database schema and exit")).set_defaults(
        func=cmd_migrate
    )
    validate = with_config(
        sub.add_parser(
            "validate",
            help="check the settings and the config file offline (no probes); exit 0, or 2 listing every error",
        )
    )
    validate.add_argument(
        "--offline",
        action="store_true",
        help="do not look at a database that is already running (for endpoints the file would take over)",
    )
    validate.set_defaults(func=cmd_validate)
    check = with_config(
        sub.add_parser("check", help="probe one endpoint id or URL once and print the result")
    )
    check.usage_exit = EXIT_UNKNOWN  # type: ignore[attr-defined]
    check.add_argument(
        "target", help="an endpoint id, or a URL: http(s)://, dns://, tcp://h:p, udp://h:p, icmp://h"
    )
    # In any case ("TCP"), as everywhere a protocol is named: lowered before the choice is checked.
    check.add_argument("--protocol", type=str.lower, choices=["http", "https", "tcp", "udp", "dns", "icmp"])
    check.add_argument("--timeout", type=float, help="seconds per attempt")
    check.add_argument("--retries", type=int, help="extra attempts when DOWN")
    check.add_argument("--send", help="tcp/udp payload (text)")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(func=cmd_check, usage_parser=check)
    notify = with_config(
        sub.add_parser("notify-test", help="send a test message to an alert channel and report the outcome")
    )
    notify.add_argument("channel", help="a channel name ([channels] in the config file, or POST /channels/)")
    notify.set_defaults(func=cmd_notify_test)
    with_config(
        sub.add_parser(
            "db-url",
            help="print the PostgreSQL URL ispmon uses: DATABASE_URL, or the running embedded server's",
        )
    ).set_defaults(func=cmd_db_url)
    add_snmp_walk(sub, with_config)
    add_report(sub, with_config)
    add_es_setup(sub, with_config)
    add_kibana_import(sub)
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Said by the subcommand's parser, so `ispmon check --bogus` exits 3 like its other usage errors.
        getattr(args, "usage_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for error in exc.errors:  # one line each: every problem, greppable by its key
            print(f"ispmon: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailable as exc:
        print(f"ispmon: database unavailable: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"ispmon: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
