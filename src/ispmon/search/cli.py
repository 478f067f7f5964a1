"""``ispmon es-setup``: put the ILM policies and index templates (idempotent) and print what was put."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ispmon.cli_support import load, run_coro, setup_logging
from ispmon.search.client import classify, make_client
from ispmon.search.setup import es_setup
from ispmon.search.wiring import client_config


def cmd_es_setup(args: argparse.Namespace) -> int:
    config = load(args)
    setup_logging(config)
    settings = config.settings
    if not settings.elasticsearch_url:
        print("ispmon: es-setup: ELASTICSEARCH_URL is not set", file=sys.stderr)
        return 2
    prefix = args.prefix or settings.elasticsearch_index_prefix

    async def go() -> int:
        client = make_client(client_config(settings))
        try:
            result = await es_setup(
                client,
                prefix,
                settings.elasticsearch_retention_days,
                settings.elasticsearch_retention_by_family,
            )
        except Exception as exc:
            err = classify(exc)
            print(f"ispmon: es-setup failed ({getattr(err, 'kind', 'error')}): {err}", file=sys.stderr)
            return 1
        finally:
            await client.close()
        print(f"Elasticsearch {result.server_version}: prefix {prefix!r}")
        for what, names in (
            ("ILM policy", result.policies),
            ("component template", result.component_templates),
            ("index template", result.index_templates),
        ):
            for name in names:
                print(f"  {what}: {name}")
        return 0

    return run_coro(go())


def add_es_setup(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    p = with_config(
        sub.add_parser(
            "es-setup",
            help="put the Elasticsearch ILM policies and index templates (idempotent; also done at start)",
        )
    )
    p.add_argument("--prefix", help="index prefix (default ELASTICSEARCH_INDEX_PREFIX, 'isp')")
    p.set_defaults(func=cmd_es_setup)
