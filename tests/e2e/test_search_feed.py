"""The feed in the real daemon: killed with SIGKILL in the middle of a ``_bulk`` and restarted,
every status row ends up indexed, under its own id, in exactly one index; and the daemon's own
structured events reach the system-logs index."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.esserver import EsServer

from .test_daemon import Daemon, free_port, poll, wait_for_datagram
from .test_durability import CountingTarget, config_with_endpoints, daemon_env, target  # noqa: F401

pytestmark = pytest.mark.timeout(240)
ENDPOINTS = 50


async def test_kill_9_mid_bulk_then_restart_loses_nothing_and_duplicates_no_id(
    tmp_path: Path,
    notify_socket: tuple[Path, socket.socket],
    db_dsn: str,
    target: CountingTarget,  # noqa: F811
) -> None:
    notify_path, notify = notify_socket
    es = EsServer(major=8)
    await es.start()
    ids = [f"e{i:03d}" for i in range(ENDPOINTS)]
    config = config_with_endpoints(tmp_path / "ispmon.toml", target.port, ids)
    env = {
        **daemon_env(config, db_dsn),
        "ELASTICSEARCH_URL": es.url,
        "ELASTICSEARCH_SYNC_INTERVAL": "1",
        "ELASTICSEARCH_BATCH_SIZE": "40",
        "ELASTICSEARCH_TIMEOUT": "1",
    }
    daemon = Daemon(tmp_path, free_port(), notify_path, env)
    conn = await asyncpg.connect(db_dsn)
    try:
        # Slow bulks, so that the kill lands while one is in flight (sent, not yet acknowledged).
        es.faults.bulk_delay = 0.3
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=90)
        await poll(lambda: _count(es), lambda n: n >= 100, 60, "the first documents indexed")
        await poll(lambda: _inflight(es), lambda n: n > 0, 30, "a bulk in flight")
        inflight_at_kill = es.bulk_inflight
        await asyncio.to_thread(daemon.kill9)
        es.faults.bulk_delay = 0.0
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        await asyncio.sleep(3)
        # Elasticsearch hangs (every request times out): probing goes on at full rate, and the
        # daemon says so once, not once per attempt.
        es.faults.hang = True
        before = await conn.fetchval("SELECT count(*) FROM status_history")
        hung_at = time.monotonic()

        async def lines(event: str) -> int:
            return sum(1 for x in daemon.log_lines() if x.get("event") == event)

        await poll(lambda: lines("search_sync_failing"), lambda n: n >= 1, 60, "search_sync_failing")
        await asyncio.sleep(2)  # still hanging: more failed attempts, no more lines
        during = await conn.fetchval("SELECT count(*) FROM status_history") - before
        hung_for = time.monotonic() - hung_at
        es.faults.hang = False

        await poll(lambda: lines("search_sync_recovered"), lambda n: n >= 1, 60, "search_sync_recovered")
        assert await asyncio.to_thread(daemon.terminate) == 0
        failing = [x for x in daemon.log_lines() if x.get("event") == "search_sync_failing"]
        recovered = [x for x in daemon.log_lines() if x.get("event") == "search_sync_recovered"]
        # The daemon's stopped: what it wrote is all in the table; one more run sends the rest.
        rows = {r["id"] for r in await conn.fetch("SELECT id FROM status_history")}
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        await poll(
            lambda: _indexed_ids(es),
            lambda got: rows <= got,
            60,
            "every status row indexed after the restart",
        )
        # The last run's ispmon_stopping line went to system_logs as it stopped; this run sends it.
        await poll(
            lambda: _actions(es), lambda got: got["ispmon_stopping"] >= 1, 30, "ispmon_stopping indexed"
        )
        assert await asyncio.to_thread(daemon.terminate) == 0
    finally:
        await conn.close()
        daemon.cleanup()
        await es.stop()
    per_id = Counter(int(doc_id) for (_, doc_id) in es.all_docs("isp-service-status-*"))
    assert inflight_at_kill > 0
    # Probing went on at its rate (ENDPOINTS checks a second) while Elasticsearch hung.
    assert during >= ENDPOINTS * (hung_for - 1.5), (
        f"{during} checks in {hung_for:.1f} s while Elasticsearch hung"
    )
    assert [x["kind"] for x in failing] == ["timeout"] and len(recovered) == 1, (failing, recovered)
    assert len(rows) >= ENDPOINTS * 3
    assert rows <= set(per_id), f"lost: {sorted(rows - set(per_id))[:10]}"
    assert max(per_id.values()) == 1, "an id indexed in two indices"
    resent = sum(1 for v in es.versions.values() if v > 1)
    print(f"\nSIGKILL mid-bulk: {len(rows)} rows, all indexed once by id; {resent} overwritten by the resend")
    # The daemon's own events (start, ready, stop) reached isp-system-logs-*, never one per check.
    events = await _actions(es)
    assert events["ispmon_ready"] >= 2 and events["ispmon_stopping"] >= 1
    assert sum(events.values()) < len(rows) / 5


async def _actions(es: EsServer) -> Counter[str | None]:
    return Counter(doc.get("event", {}).get("action") for doc in es.all_docs("isp-system-logs-*").values())


async def _count(es: EsServer) -> int:
    return len(es.all_docs("isp-service-status-*"))


async def _inflight(es: EsServer) -> int:
    return es.bulk_inflight


async def _indexed_ids(es: EsServer) -> set[int]:
    return {int(d) for (_, d) in es.all_docs("isp-service-status-*")}
