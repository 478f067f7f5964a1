"""The elected singleton across real processes (issue 16 §5): three `ispmon run` agents on one
PostgreSQL (different API ports and ISPMON_AGENT_ID, AGENT_DEAD_AFTER=5), a webhook receiver and
the strict Elasticsearch test server. The first agent holds the "leader" lease and alone sends
notifications and feeds Elasticsearch; it is `kill -9`ed; an outage declared after the kill is paged
by the agent that takes the lease over, within AGENT_DEAD_AFTER plus one renewal, and the sync goes
on from the stored cursors. Each page arrives exactly once; then a clean stop of the new holder
hands the lease to the last agent at once.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.esserver import EsServer

from .test_alerting import Receiver
from .test_daemon import Daemon, Target, free_port, poll, wait_for_datagram

pytestmark = pytest.mark.timeout(300)
DEAD_AFTER = 5.0


@pytest.fixture
def notify_sockets(tmp_path: Path) -> Iterator[list[tuple[Path, socket.socket]]]:
    made = []
    for name in "abc":
        path = tmp_path / f"notify-{name}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        made.append((path, sock))
    yield made
    for _, sock in made:
        sock.close()


def config(path: Path, receiver_port: int, target_port: int) -> Path:
    path.write_text(
        f"""
[settings]
alert_notification_channels = "webhook"
alert_retry_base_seconds = 0.2
alert_retry_max_seconds = 0.5

[channels]
webhook = "json://127.0.0.1:{receiver_port}/hook"

[[endpoints]]
id = "web"
name = "Web front end"
url = "http://127.0.0.1:{target_port}/health"
check_interval = 1
timeout = 0.5
"""
    )
    return path


def events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [x for x in daemon.log_lines() if x.get("event") == name]


async def leader(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT holder, epoch, acquired_at, expires_at, expires_at > now() AS valid"
        " FROM agent_leases WHERE name = 'leader'"
    )


async def test_singleton_killed_paging_and_sync_resume_on_another_agent(
    tmp_path: Path, notify_sockets: list[tuple[Path, socket.socket]], db_dsn: str
) -> None:
    receiver = Receiver(free_port())
    await receiver.up()
    target = Target(free_port())
    await target.up()
    es = EsServer(major=8)
    await es.start()
    path = config(tmp_path / "ispmon.toml", receiver.port, target.port)
    env = {
        "DATABASE_URL": db_dsn,
        "ISPMON_CONFIG": str(path),
        "AGENT_DEAD_AFTER": str(DEAD_AFTER),
        "ELASTICSEARCH_URL": es.url,
        "ELASTICSEARCH_SYNC_INTERVAL": "1",
        "OUTAGE_DETECTION_THRESHOLD": "2",
        "OUTAGE_VERIFICATION_CHECKS": "1",
        "OUTAGE_RECOVERY_THRESHOLD": "1",
        "SERVICE_CHECK_RETRIES": "0",
        "ALERT_SEND_TIMEOUT": "2",
        "ALERT_SEND_LEASE_SECONDS": "5",
    }
    daemons = []
    for name, (notify_path, _) in zip("abc", notify_sockets, strict=True):
        state = tmp_path / name
        state.mkdir()
        daemons.append(Daemon(state, free_port(), notify_path, {**env, "ISPMON_AGENT_ID": name}))
    a, b, c = daemons
    conn = await asyncpg.connect(db_dsn)
    try:
        # One at a time, so "a" is the first holder (the config sync is not raced either).
        for daemon, (_, notify) in zip(daemons, notify_sockets, strict=True):
            daemon.start()
            await wait_for_datagram(notify, "READY=1", timeout=120)
        first = await leader(conn)
        assert first is not None and (first["holder"], first["valid"]) == ("a", True)
        await poll(lambda: _indexed(es), lambda ids: len(ids) >= 10, 60, "the sync feeding Elasticsearch")
        # Only the holder does the singleton work.
        assert events(a, "lease_gained") and events(a, "singleton_work_started")
        for other in (b, c):
            assert not events(other, "lease_gained") and not events(other, "search_setup_done")

        await asyncio.to_thread(a.kill9)
        killed_at = await conn.fetchval("SELECT now()")
        last = await leader(conn)
        assert last is not None and last["holder"] == "a"
        # Paging: an outage declared after the kill. Its page waits for the next holder.
        await target.down()
        await poll(lambda: _open_alerts(conn), lambda n: n == 1, 60, "an alert for the outage")
        await poll(lambda: _async(receiver.titles), lambda t: len(t) >= 1, 60, "the declared page")
        now = await leader(conn)
        assert now is not None and now["holder"] in ("b", "c") and now["epoch"] == last["epoch"] + 1
        taken_after = (now["acquired_at"] - last["expires_at"]).total_seconds()
        since_kill = (now["acquired_at"] - killed_at).total_seconds()
        print(f"\nlease taken over {since_kill:.2f} s after the kill ({taken_after:.2f} s after it expired)")
        # The old row ran out within AGENT_DEAD_AFTER of the kill; the next holder took it within
        # a renewal period of that (1 s), plus room for a loaded machine.
        assert (last["expires_at"] - killed_at).total_seconds() <= DEAD_AFTER
        assert 0 <= taken_after <= 3.0, taken_after
        holder = b if now["holder"] == "b" else c
        waiting = c if holder is b else b
        sent_at = await poll(
            lambda: conn.fetchval("SELECT max(sent_at) FROM notifications WHERE event = 'declared'"),
            lambda at: at is not None,
            30,
            "the declared page marked sent",
        )
        assert sent_at >= now["acquired_at"]

        # The sync goes on from the stored cursors: every row written until now gets indexed.
        rows = {r["id"] for r in await conn.fetch("SELECT id FROM status_history")}
        await poll(lambda: _indexed(es), lambda ids: rows <= ids, 60, "every status row indexed")

        # Recovery: the resolution is paged once (every agent probes "web" until ownership).
        await target.up()
        await poll(lambda: _async(receiver.titles), lambda t: len(t) >= 2, 60, "the resolved page")
        await asyncio.sleep(2 * DEAD_AFTER / 5)  # a few more sender and tick rounds: nothing more
        # A clean stop of the holder releases the lease: the last agent takes it within a period.
        assert await asyncio.to_thread(holder.terminate) == 0
        stopped_at = await conn.fetchval("SELECT now()")
        await poll(lambda: leader(conn), lambda r: r is not None and r["holder"] == waiting.extra_env["ISPMON_AGENT_ID"]
                   and r["valid"], 30, "the lease taken by the last agent")  # fmt: skip
        handed = await leader(conn)
        assert handed is not None and (handed["acquired_at"] - stopped_at).total_seconds() < DEAD_AFTER
        assert events(holder, "lease_released")[-1]["released"] is True
        assert await asyncio.to_thread(waiting.terminate) == 0
        outbox = await conn.fetch("SELECT event, state, attempts FROM notifications ORDER BY id")
        alerts = await conn.fetch("SELECT state, resolved_at FROM alerts")
    finally:
        await conn.close()
        for daemon in daemons:
            daemon.cleanup()
        await es.stop()
        await receiver.down()
        await target.down()
    titles = receiver.titles()
    assert len(titles) == 2, titles
    assert "DOWN" in titles[0] and "Web front end" in titles[0]
    assert "RESOLVED" in titles[1].upper() or "UP" in titles[1], titles
    # Nothing lost, nothing sent twice: one alert, its two pages, both sent, nothing left pending.
    assert [(r["event"], r["state"]) for r in outbox] == [("declared", "sent"), ("resolved", "sent")]
    assert [r["state"] for r in alerts] == ["resolved"]
    per_id = Counter(int(doc_id) for (_, doc_id) in es.all_docs("isp-service-status-*"))
    assert max(per_id.values()) == 1, "an id indexed in two indices"


async def _indexed(es: EsServer) -> set[int]:
    return {int(d) for (_, d) in es.all_docs("isp-service-status-*")}


async def _open_alerts(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM alerts WHERE resolved_at IS NULL"))


async def _async(fn: Any) -> Any:
    return fn()
