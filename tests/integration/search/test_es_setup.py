"""``ispmon es-setup`` as a command: puts every policy and template, idempotently; clear failures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from ispmon.search import templates
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
