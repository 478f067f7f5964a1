"""`ispmon snmp-walk`: discover a device (by id, or a host with credentials) and print it, a quick
way for an operator to check credentials."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ispmon.availability.endpoints import SLUG_RE
from ispmon.cli_support import load, run_coro, setup_logging
from ispmon.config import LoadedConfig
from ispmon.errors import ConfigError
from ispmon.validation import error_list, format_errors


def add_snmp_walk(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    walk = with_config(
        sub.add_parser("snmp-walk", help="discover an SNMP device (id or host) and print what it has")
    )
    walk.add_argument("target", help="a device id (config file or database), or a host[:port]")
    walk.add_argument("--community", help="v1/v2c community (visible in ps: prefer a device id)")
    walk.add_argument("--v1", action="store_true", help="SNMP v1 (default v2c)")
    walk.add_argument("--v3", action="store_true", help="SNMP v3 USM with --user and keys")
    walk.add_argument("--user", help="v3 user name")
    walk.add_argument("--auth-protocol", help="MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512")
    walk.add_argument("--auth-key")
    walk.add_argument("--priv-protocol", help="DES, AES, AES-192, AES-256")
    walk.add_argument("--priv-key")
    walk.add_argument("--context", help="v3 context name")
    walk.add_argument("--timeout", type=float, help="seconds per request (2)")
    walk.add_argument("--retries", type=int, help="extra requests after a timeout (1)")
    walk.add_argument("--json", action="store_true", help="print JSON")
    walk.set_defaults(func=cmd_snmp_walk)


def cmd_snmp_walk(args: argparse.Namespace) -> int:
    """Discover a device (by id, or a host with credentials) and print it; exit 1 when it fails."""
    from ispmon.network.snmp import SnmpError
    from ispmon.network.walk import render, walk

    config = load(args)
    setup_logging(config, level="error")

    async def go() -> int:
        spec = await _device(config, args)
        try:
            found, width = await walk(spec)
        except SnmpError as exc:
            print(f"ispmon snmp-walk: {spec.id}: {exc.kind}: {exc.message}", file=sys.stderr)
            return 1
        print(render(spec, found, width, as_json=args.json))
        return 0

    return run_coro(go())


async def _device(config: LoadedConfig, args: argparse.Namespace) -> Any:
    """The DeviceSpec to walk: the config file's or the database's device of that id, else a
    definition from the command line (the target is the address)."""
    from ispmon.network.devices import build_device

    given = {
        k: v
        for k, v in {
            "community": args.community,
            "username": args.user,
            "auth_protocol": args.auth_protocol,
            "auth_key": args.auth_key,
            "priv_protocol": args.priv_protocol,
            "priv_key": args.priv_key,
            "context": args.context,
            "timeout": args.timeout,
            "retries": args.retries,
        }.items()
        if v is not None
    }
    data: dict[str, Any] | None = next((d.stored_dict() for d in config.devices if d.id == args.target), None)
    if data is None and SLUG_RE.match(args.target) and not given:
        data = await _device_from_database(config, args.target)
    if data is None:
        version = "3" if args.v3 else "1" if args.v1 else "2c"
        data = {"id": "cli-walk", "name": args.target, "address": args.target, "version": version}
    elif given.keys() & {"community", "username"}:
        data = {k: v for k, v in data.items() if k not in ("community", "username", "auth_protocol",
                                                           "auth_key", "priv_protocol", "priv_key")}
    data = {**data, **given, "poll_interval": max(60.0, 2 * (args.timeout or 2) * ((args.retries or 1) + 1))}
    try:
        return build_device(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(error_list(exc))) from None


async def _device_from_database(config: LoadedConfig, device_id: str) -> dict[str, Any] | None:
    settings = config.settings
    if not settings.database_url and not (settings.ispmon_state_dir / "postgres" / "PG_VERSION").exists():
        return None
    from ispmon.daemon import open_database

    db, embedded = await open_database(settings)
    try:
        row = await db.devices.get(device_id)
        return dict(row["spec"]) if row else None
    finally:
        await db.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
