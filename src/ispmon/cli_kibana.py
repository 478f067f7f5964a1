"""`ispmon kibana-import`: load ispmon's dashboards, visualizations and data views into Kibana.

Exit 0 when Kibana took every object; 1 when any object failed (each printed with its reason) or
the import could not be made (one line: connection, TLS, credentials, space); 2 on a usage error.
Secrets may come from the environment (KIBANA_API_KEY, KIBANA_PASSWORD) so that they are not
visible in `ps`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from ispmon.cli_support import EXIT_CONFIG, run_coro

# The feed's rule for ELASTICSEARCH_INDEX_PREFIX (settings.py).
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.]{0,49}$")


def add_kibana_import(sub: Any) -> None:
    p = sub.add_parser(
        "kibana-import",
        help="import ispmon's Kibana dashboards, visualizations and data views (saved objects API)",
    )
    p.add_argument("--url", required=True, help="Kibana's base URL, e.g. https://kibana.example:5601")
    p.add_argument("--api-key", help="an API key in its encoded form (or KIBANA_API_KEY)")
    p.add_argument("--user", help="basic auth user (password from --password or KIBANA_PASSWORD)")
    p.add_argument("--password", help="basic auth password (visible in ps: prefer KIBANA_PASSWORD)")
    p.add_argument("--space", help="a Kibana space id (default: the default space)")
    p.add_argument("--ca-file", type=Path, help="CA certificate(s) to verify Kibana's TLS certificate")
    p.add_argument(
        "--prefix",
        default=None,
        help="the index prefix the data views match (default: ELASTICSEARCH_INDEX_PREFIX, as the feed, else isp)",
    )
    p.add_argument(
        "--file",
        type=Path,
        action="append",
        dest="files",
        help="import this ndjson file instead of the shipped ones (repeatable)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (60)")
    p.set_defaults(func=cmd_kibana_import)


def _usage(message: str) -> int:
    print(f"ispmon kibana-import: {message}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_kibana_import(args: argparse.Namespace) -> int:
    from ispmon.search.kibana_import import (
        SPACE_RE,
        FileOutcome,
        ImportFailed,
        KibanaTarget,
        import_all,
        shipped_files,
    )
    from ispmon.search.kibana_objects import build, render
    from ispmon.search.templates import DEFAULT_PREFIX

    api_key = args.api_key or os.environ.get("KIBANA_API_KEY") or None
    password = args.password if args.password is not None else os.environ.get("KIBANA_PASSWORD")
    if not args.url.startswith(("http://", "https://")):
        return _usage(f"--url: {args.url!r} is not an http:// or https:// URL")
    if api_key and args.user:
        return _usage("give --api-key or --user/--password, not both")
    if args.user and password is None:
        return _usage("--user needs --password or KIBANA_PASSWORD")
    if args.space and not SPACE_RE.match(args.space):
        return _usage(f"--space: {args.space!r} is not a space id (lower-case letters, digits, _ and -)")
    if not args.timeout > 0:
        return _usage(f"--timeout: {args.timeout:g} is not a positive number of seconds")
    if args.ca_file is not None and not args.ca_file.is_file():
        return _usage(f"--ca-file: {args.ca_file} is not a file")
    if args.files and args.prefix is not None:
        return _usage("--prefix applies to the shipped objects, not to --file")
    prefix = args.prefix or os.environ.get("ELASTICSEARCH_INDEX_PREFIX") or DEFAULT_PREFIX
    if not PREFIX_RE.match(prefix):
        source = "--prefix" if args.prefix else "ELASTICSEARCH_INDEX_PREFIX"
        return _usage(f"{source}: {prefix!r} is not an index prefix (a-z, 0-9, _ and ., at most 50)")
    if args.files:
        try:
            files = [(path.name, path.read_bytes()) for path in args.files]
        except OSError as exc:
            return _usage(f"--file: {exc}")
    elif prefix == DEFAULT_PREFIX:
        files = shipped_files()
    else:
        files = [(name, render(objects).encode()) for name, objects in build(prefix).items()]
    target = KibanaTarget(
        url=args.url,
        api_key=api_key,
        user=args.user,
        password=password,
        space=args.space,
        ca_file=args.ca_file,
        timeout=args.timeout,
    )

    failed = 0

    def report(outcome: FileOutcome) -> None:
        nonlocal failed
        print(f"{outcome.name}: {outcome.imported} imported, {len(outcome.errors)} failed", flush=True)
        for line in outcome.errors:
            print(f"  FAILED {line}")
        for line in outcome.warnings:
            print(f"  WARNING {line}")
        failed += len(outcome.errors)

    async def go() -> int:
        try:
            await import_all(target, files, report)
        except ImportFailed as exc:
            print(f"ispmon kibana-import: {exc}", file=sys.stderr)
            return 1
        return 1 if failed else 0

    return run_coro(go())
