"""``ispmon es-setup`` as a command: puts every policy and template, idempotently; clear failures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg

from ispmon.config import Settings
from ispmon.search import templates
from ispmon.search.wiring import SearchFeed
from tests.esserver import EsServer


async def es_setup(url: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICSEARCH_")}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ispmon", "es-setup", *extra],
        env={**base, "ELASTICSEARCH_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_es_setup_puts_everything_and_again(es: EsServer) -> None:
    for _ in range(2):
        done = await es_setup(es.url)
        assert done.returncode == 0, done.stderr
    assert set(es.ilm_policies) == set(templates.ilm_policies("isp"))
    assert set(es.component_templates) == set(templates.component_templates("isp"))
    assert set(es.index_templates) == set(templates.index_templates("isp"))
    assert "index template: isp-service-status" in done.stdout and es.version in done.stdout
    done = await es_setup(es.url, "--prefix", "acme")
    assert done.returncode == 0 and "acme-system-logs" in es.index_templates
    assert es.index_templates["acme-system-logs"]["index_patterns"] == ["acme-system-logs-*"]


async def test_es_setup_failures_are_one_clear_line() -> None:
    secured = EsServer(major=8, basic=("elastic", "right"))
    await secured.start()
    try:
        done = await es_setup(secured.url, ELASTICSEARCH_USERNAME="elastic", ELASTICSEARCH_PASSWORD="wrong")
        assert done.returncode == 1 and "(credentials)" in done.stderr and "wrong" not in done.stderr
        ok = await es_setup(secured.url, ELASTICSEARCH_USERNAME="elastic", ELASTICSEARCH_PASSWORD="right")
        assert ok.returncode == 0, ok.stderr
    finally:
        await secured.stop()
    done = await es_setup("http://127.0.0.1:9")  # nothing listens on the discard port
    assert done.returncode == 1 and "(connection)" in done.stderr
    done = await es_setup("ftp://es.example.net")
    assert done.returncode == 2 and "elasticsearch_url" in done.stderr.lower()


def delete_days(es: EsServer, family: str, prefix: str = "isp") -> str | None:
    """The delete age of `family`'s ILM policy as the server stored it (None: never deleted)."""
    phases = es.ilm_policies[templates.policy_name(prefix, family)]["phases"]
    return phases["delete"]["min_age"] if "delete" in phases else None


async def test_es_setup_applies_each_familys_retention(es: EsServer) -> None:
    done = await es_setup(
        es.url,
        ELASTICSEARCH_RETENTION="status=7, service_outage=730,logs=0",
        ELASTICSEARCH_RETENTION_DAYS="90",
    )
    assert done.returncode == 0, done.stderr
    assert delete_days(es, "service_status") == "7d"
    assert delete_days(es, "service_outage") == "730d"
    assert delete_days(es, "system_logs") is None  # 0: kept
    # Families not named take ELASTICSEARCH_RETENTION_DAYS, as before.
    assert delete_days(es, "network_metrics") == "90d" and delete_days(es, "customer_usage") == "90d"
    assert delete_days(es, "maintenance_windows") is None
    # Without either setting: each family's default.
    done = await es_setup(es.url)
    assert done.returncode == 0, done.stderr
    assert delete_days(es, "service_status") == "30d" and delete_days(es, "customer_usage") == "400d"
    assert delete_days(es, "service_outage") == "365d" and delete_days(es, "system_logs") == "30d"


async def test_a_bad_retention_is_refused_naming_the_setting(es: EsServer) -> None:
    for value, words in (("status=30,flows=9", "unknown family 'flows'"), ("logs=two", "the days of 'logs'")):
        done = await es_setup(es.url, ELASTICSEARCH_RETENTION=value)
        assert done.returncode == 2, done.stderr
        assert "elasticsearch_retention" in done.stderr.lower() and words in done.stderr
    assert es.ilm_policies == {}


async def test_the_feeds_start_up_setup_applies_each_familys_retention(
    pool: asyncpg.Pool, es: EsServer
) -> None:
    settings = Settings(elasticsearch_url=es.url, elasticsearch_retention="usage=800,metrics=14")
    feed = SearchFeed.build(pool, settings)
    try:
        assert await feed.setup()
    finally:
        await feed.close()
    assert delete_days(es, "customer_usage") == "800d" and delete_days(es, "network_metrics") == "14d"
    assert delete_days(es, "service_status") == "30d"  # not named: the family's default
