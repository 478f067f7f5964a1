"""`kill -9` of a real `ispmon run` while it receives softflowd's v5 export and flushes it, in the
middle of a flush's transaction: after the restart every flow's aggregate is either exact or absent
(never doubled, never partial), and what is absent is only what the killed process held in memory:
the datagrams it received after its last committed flush.

The flush is caught in its transaction by a trigger the test puts on flow_batches (it sleeps, in
PostgreSQL, before the batch id is inserted), so the kill lands between BEGIN and COMMIT.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.test_daemon import Daemon, free_port, wait_for_datagram
from tests.integration.flows.pcap import Packet, write_pcap
from tests.integration.flows.test_softflowd import softflowd

pytestmark = pytest.mark.timeout(300)
FLOWS = 3000  # each from its own source /24, so each is its own aggregate row
FLUSH = 1.0  # FLOW_FLUSH_INTERVAL: the daemon's flushes come ten times as often as by default
SLOW_FLUSH = """
CREATE FUNCTION test_slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$;
CREATE TRIGGER test_slow_batch BEFORE INSERT ON flow_batches FOR EACH ROW EXECUTE FUNCTION test_slow_batch();
"""


def source(i: int) -> str:
    return f"10.{100 + i // 256}.{i % 256}.1"


def flows(t0: float) -> list[Packet]:
    return [Packet(t0 + i * 0.01, source(i), "192.0.2.9", 6, 40000, 443, 10 + i % 50) for i in range(FLOWS)]


def v5_sources(datagram: bytes) -> list[str]:
    """The source addresses of a NetFlow v5 datagram's records (RFC-less but fixed: 24 + 48 n)."""
    (count,) = struct.unpack_from("!H", datagram, 2)
    return [socket.inet_ntoa(datagram[24 + 48 * n : 28 + 48 * n]) for n in range(count)]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def capture(tmp: Path, t0: float) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sink.settimeout(2)
        pcap = tmp / "flows.pcap"
        write_pcap(pcap, flows(t0))
        await asyncio.to_thread(softflowd, tmp, pcap, sink.getsockname()[1], 5)
        out = []
        try:
            while True:
                out.append(sink.recv(65535))
        except TimeoutError:
            pass
    return out


async def test_kill_9_mid_flush_doubles_no_aggregate_and_loses_only_the_unflushed(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], db_dsn: str
) -> None:
    notify_path, notify = notify_socket
    t0 = time.time() // 60 * 60 - 600 + 1  # ten minutes ago: closed minutes, written at each flush
    datagrams = await capture(tmp_path, t0)
    by_source = {s: d for d, gram in enumerate(datagrams) for s in v5_sources(gram)}
    assert len(by_source) == FLOWS, "softflowd exported every flow once"
    expected = {f"{source(i).rsplit('.', 1)[0]}.0/24": 40 + 10 + i % 50 for i in range(FLOWS)}
    datagram_of = {f"{s.rsplit('.', 1)[0]}.0/24": d for s, d in by_source.items()}

    udp_port = free_udp_port()
    config = tmp_path / "ispmon.toml"
    config.write_text('[[flow_exporters]]\nid = "r1"\naddress = "127.0.0.1"\nname = "softflowd"\n')
    daemon = Daemon(
        tmp_path,
        free_port(),
        notify_path,
        {
            "FLOW_PORT": str(udp_port),
            "FLOW_ADDRESS": "127.0.0.1",
            "ISPMON_CONFIG": str(config),
            "FLOW_FLUSH_INTERVAL": str(FLUSH),
            # A database of the test server: no embedded server to initialise and start each time.
            "DATABASE_URL": db_dsn,
        },
    )
    target = ("127.0.0.1", udp_port)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn: asyncpg.Connection | None = None
    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        conn = await asyncpg.connect(db_dsn)
        sent = 0
        killed_at: int | None = None
        slowed = False
        deadline = time.monotonic() + 60
        while killed_at is None and time.monotonic() < deadline and sent < len(datagrams):
            sender.sendto(datagrams[sent], target)
            sent += 1
            for _ in range(5):  # ~4 datagrams/s, the database looked at every 50 ms
                await asyncio.sleep(0.05)
                if not slowed and await conn.fetchval("SELECT count(*) FROM flow_batches"):
                    await conn.execute(SLOW_FLUSH)  # the first flush committed; the next one is caught
                    slowed = True
                elif slowed and await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'INSERT INTO flow_batches%'"
                ):
                    daemon.kill9()  # inside the flush's transaction
                    killed_at = sent
                    break
        assert killed_at is not None, f"no flush was caught in its transaction ({sent} datagrams sent)"
        assert killed_at < len(datagrams), "nothing left to send after the restart"
        await conn.close()
        conn = None

        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=90)
        conn = await asyncpg.connect(db_dsn)
        await conn.execute("DROP TRIGGER test_slow_batch ON flow_batches")
        # The killed transaction left nothing: only the first flush's batch id is stored.
        assert await conn.fetchval("SELECT count(*) FROM flow_batches") == 1
        for d in datagrams[killed_at:]:
            sender.sendto(d, target)
            await asyncio.sleep(0.005)
        after = {p for p, d in datagram_of.items() if d >= killed_at}
        stored: dict[str, int] = {}
        for _ in range(200):  # the restarted daemon's own flusher (every FLUSH s) writes them
            stored = {
                r["src_prefix"]: int(r["bytes"])
                for r in await conn.fetch(
                    "SELECT src_prefix, sum(bytes) AS bytes FROM flow_aggregates GROUP BY 1"
                )
            }
            if after <= set(stored):
                break
            await asyncio.sleep(0.25)
        # A few more flush intervals: what was written is not written again.
        await asyncio.sleep(3 * FLUSH)
        again = {
            r["src_prefix"]: int(r["bytes"])
            for r in await conn.fetch(
                "SELECT src_prefix, sum(bytes) AS bytes FROM flow_aggregates GROUP BY 1"
            )
        }
        assert again == stored
        rows = await conn.fetchval("SELECT count(*) FROM flow_aggregates")
        await conn.close()
        conn = None
        assert set(stored) <= set(expected)
        assert rows == len(stored), "one row per source /24 and minute: no batch was written twice"
        # Never doubled, never partial.
        assert {p: b for p, b in stored.items() if b != expected[p]} == {}
        lost = {datagram_of[p] for p in expected if p not in stored}
        # Lost: only datagrams the killed process had received since its last committed flush, a
        # contiguous run ending with the last one sent before the kill; everything after is exact.
        assert lost, "the kill came when nothing was in memory: no crash in the middle"
        assert lost == set(range(min(lost), killed_at)), (sorted(lost), killed_at)
        assert min(lost) > 0, "the first flush's datagrams are stored"
        assert daemon.terminate() == 0  # and it stops cleanly
    finally:
        sender.close()
        if conn is not None:
            await conn.close()
        daemon.cleanup()
