"""Two agents (two real `ispmon run` processes, different ISPMON_AGENT_ID, API and flow ports) on
one PostgreSQL, each with its own flow collector (issue 16 §6): an exporter's datagrams split
between them, for the same minute and the same aggregation keys, are summed exactly (each agent
appends its own rows under its own batch ids: nothing overwrites, nothing collides), and a
`kill -9` of one agent inside its flush's transaction, while the other goes on flushing, leaves
the other's figures exact and the killed one's exact or absent, as with one agent; an IPFIX
exporter that fails over after its last template is decoded by the second agent from what the
first shared (flow_domains); an exporter sending to both at once is warned about by each.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from ispmon.flows.decode import _sets
from tests.e2e.test_daemon import Daemon, free_port, wait_for_datagram
from tests.e2e.test_flow_crash import free_udp_port, v5_sources
from tests.integration.flows.pcap import Packet, write_pcap
from tests.integration.flows.test_softflowd import softflowd

pytestmark = pytest.mark.timeout(300)
FLUSH = 1.0  # FLOW_FLUSH_INTERVAL of both agents
EXPORTER = '[[flow_exporters]]\nid = "r1"\naddress = "127.0.0.1"\nname = "softflowd"\n'
# Only agent "a"'s flushes are slowed (its connections carry application_name=ispmon-a).
SLOW_A = """
CREATE FUNCTION test_slow_a() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('application_name') = 'ispmon-a' THEN PERFORM pg_sleep(3); END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_slow_a BEFORE INSERT ON flow_batches FOR EACH ROW EXECUTE FUNCTION test_slow_a();
"""
TOTALS = "SELECT src_prefix, sum(bytes)::bigint AS bytes, count(*) AS n FROM flow_aggregates GROUP BY 1"


@dataclass
class Agent:
    name: str
    daemon: Daemon
    notify: socket.socket
    flow_port: int

    def start(self) -> None:
        self.daemon.start()

    async def ready(self) -> None:
        await wait_for_datagram(self.notify, "READY=1", timeout=90)


def make_agent(tmp_path: Path, name: str, db_dsn: str) -> Agent:
    state = tmp_path / name
    state.mkdir()
    (state / "ispmon.toml").write_text(EXPORTER)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(state / "notify.sock"))
    notify.setblocking(False)
    port = free_udp_port()
    env = {
        # application_name (an asyncpg server setting from the URL) tells the agents' sessions apart
        "DATABASE_URL": f"{db_dsn}{'&' if '?' in db_dsn else '?'}application_name=ispmon-{name}",
        "ISPMON_AGENT_ID": name,
        "ISPMON_CONFIG": str(state / "ispmon.toml"),
        "FLOW_ADDRESS": "127.0.0.1",
        "FLOW_PORT": str(port),
        "FLOW_FLUSH_INTERVAL": str(FLUSH),
    }
    return Agent(name, Daemon(state, free_port(), state / "notify.sock", env), notify, port)


@pytest.fixture
async def agents(tmp_path: Path, db_dsn: str) -> AsyncIterator[tuple[Agent, Agent]]:
    a, b = make_agent(tmp_path, "a", db_dsn), make_agent(tmp_path, "b", db_dsn)
    try:
        a.start()
        b.start()  # together: the schema is migrated under an advisory lock, by whichever comes first
        await asyncio.gather(a.ready(), b.ready())
        yield a, b
    finally:
        for agent in (a, b):
            agent.daemon.cleanup()
            agent.notify.close()


async def exported(tmp: Path, packets: list[Packet], version: int) -> list[bytes]:
    """softflowd's export of `packets`, caught on a socket of ours (to be sent on by hand)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sink.settimeout(2)
        pcap = tmp / f"export-{time.monotonic_ns()}.pcap"
        write_pcap(pcap, packets)
        await asyncio.to_thread(softflowd, tmp, pcap, sink.getsockname()[1], version)
        out = []
        try:
            while True:
                out.append(sink.recv(65535))
        except TimeoutError:
            pass
    return out


async def exporters(agent: Agent) -> dict[str, Any]:
    url = f"http://127.0.0.1:{agent.daemon.api_port}/flows/exporters"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
    return body


async def flows_decoded(agent: Agent) -> int:
    return int((await exporters(agent))["items"][0]["stats"]["flows"])


async def totals(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    return {r["src_prefix"]: (int(r["bytes"]), int(r["n"])) for r in await conn.fetch(TOTALS)}


async def a_committed(conn: asyncpg.Connection, datagram_of: dict[str, int]) -> bool:
    """Whether a flow sent to A (an even datagram) is stored: A's first flush has committed."""
    return any(datagram_of.get(p, 1) % 2 == 0 for p in await totals(conn))


async def settled(conn: asyncpg.Connection, done: set[str], what: str) -> dict[str, tuple[int, int]]:
    """Wait (generously) until every prefix in `done` is stored, then a few more flushes: the
    figures read then must not move any more."""
    deadline = time.monotonic() + 90
    stored = await totals(conn)
    while not done <= set(stored):
        assert time.monotonic() < deadline, f"{what}: missing {sorted(done - set(stored))[:5]}"
        await asyncio.sleep(0.25)
        stored = await totals(conn)
    await asyncio.sleep(3 * FLUSH)
    return await totals(conn)


async def test_two_agents_sum_the_same_minute_and_keys_exactly(
    tmp_path: Path, db_dsn: str, agents: tuple[Agent, Agent]
) -> None:
    a, b = agents
    t0 = time.time() // 60 * 60 - 600 + 1  # one closed minute ten minutes ago
    # 1,200 flows over 5 source /24s: 240 distinct flows per aggregation key, in one minute.
    packets = [
        Packet(t0 + i * 0.04, f"10.1.{i % 5}.{1 + i // 5 % 200}", "192.0.2.9", 6, 10000 + i, 443, i % 50)
        for i in range(1200)
    ]
    expected: dict[str, int] = {}
    for p in packets:
        key = p.src.rsplit(".", 1)[0] + ".0/24"
        expected[key] = expected.get(key, 0) + p.ip_length
    datagrams = await exported(tmp_path, packets, 5)
    assert len(datagrams) >= 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        # Alternately to each agent, as an exporter flapping between two collectors would: both
        # hold the same minute and keys at the same time and flush them on their own clocks.
        for n, d in enumerate(datagrams):
            sender.sendto(d, ("127.0.0.1", (a, b)[n % 2].flow_port))
            await asyncio.sleep(0.05)
    conn = await asyncpg.connect(db_dsn)
    try:
        stored = await settled(conn, set(expected), "the aggregates of both agents")
        assert {k: v[0] for k, v in stored.items()} == expected  # the sum of both: none lost or doubled
        # Each agent appended its own rows for every key (one per flush that held it).
        assert all(n >= 2 for _, n in stored.values()), stored
        # What each collector decoded: between them, every flow once, and each had a share.
        decoded = [await flows_decoded(agent) for agent in (a, b)]
    finally:
        await conn.close()
    assert sum(decoded) == len(packets) and min(decoded) > 0, decoded
    for agent in (a, b):
        assert agent.daemon.terminate() == 0


async def test_kill_9_of_one_agent_mid_flush_leaves_the_other_exact(
    tmp_path: Path, db_dsn: str, agents: tuple[Agent, Agent]
) -> None:
    a, b = agents
    t0 = time.time() // 60 * 60 - 600 + 1
    flows = 4500  # each from its own source /24: each flow is its own aggregate row
    packets = [
        Packet(t0 + i * 0.01, f"10.{100 + i // 256}.{i % 256}.1", "192.0.2.9", 6, 40000, 443, 10 + i % 50)
        for i in range(flows)
    ]
    expected = {f"10.{100 + i // 256}.{i % 256}.0/24": 50 + i % 50 for i in range(flows)}
    datagrams = await exported(tmp_path, packets, 5)
    datagram_of = {
        f"{s.rsplit('.', 1)[0]}.0/24": d for d, gram in enumerate(datagrams) for s in v5_sources(gram)
    }
    assert set(datagram_of) == set(expected), "softflowd exported every flow once"
    to_a, to_b = datagrams[0::2], datagrams[1::2]  # A's n-th datagram is datagrams[2n]
    conn = await asyncpg.connect(db_dsn)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        await conn.execute(SLOW_A)  # every flush of A sleeps 3 s inside its transaction; B's do not
        sent_a = sent_b = 0
        seen_busy_at: int | None = None  # flow_batches' count when A was first seen mid-flush
        killed_at: int | None = None
        deadline = time.monotonic() + 90
        while killed_at is None and time.monotonic() < deadline and sent_a < len(to_a):
            sender.sendto(to_a[sent_a], ("127.0.0.1", a.flow_port))
            sender.sendto(to_b[sent_b], ("127.0.0.1", b.flow_port))
            sent_a, sent_b = sent_a + 1, sent_b + 1
            for _ in range(6):  # ~3 datagrams/s to each, the database looked at every 50 ms
                await asyncio.sleep(0.05)
                if seen_busy_at is None and not await a_committed(conn, datagram_of):
                    continue  # A's first flush has not committed yet
                a_busy = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ispmon-a' "
                    "AND state = 'active' AND query LIKE 'INSERT INTO flow_batches%'"
                )
                batches = await conn.fetchval("SELECT count(*) FROM flow_batches")
                if not a_busy:
                    seen_busy_at = None
                elif seen_busy_at is None:
                    seen_busy_at = batches
                elif batches > seen_busy_at:
                    a.daemon.kill9()  # A dies between BEGIN and COMMIT; B committed meanwhile
                    killed_at = sent_a
                    break
        assert killed_at is not None, f"A's flush was never caught while B flushed ({sent_a} sent)"
        assert killed_at < len(to_a), "nothing left to send to A after its restart"
        # B goes on alone with its share, then A comes back and gets the rest of its share.
        for d in to_b[sent_b:]:
            sender.sendto(d, ("127.0.0.1", b.flow_port))
            await asyncio.sleep(0.005)
        a.start()
        await a.ready()
        await conn.execute("DROP TRIGGER test_slow_a ON flow_batches")
        for d in to_a[killed_at:]:
            sender.sendto(d, ("127.0.0.1", a.flow_port))
            await asyncio.sleep(0.005)
        after = {p for p, d in datagram_of.items() if d % 2 == 1 or d // 2 >= killed_at}
        stored = await settled(conn, after, "B's share and A's after its restart")
    finally:
        sender.close()
        await conn.close()
    assert set(stored) <= set(expected)
    assert all(n == 1 for _, n in stored.values()), "a row per flow: no batch was written twice"
    assert {p: b for p, (b, _) in stored.items() if b != expected[p]} == {}, "never partial, never doubled"
    lost = {datagram_of[p] for p in expected if p not in stored}
    assert lost, "the kill came when A held nothing: no crash in the middle of a flush"
    assert all(d % 2 == 0 for d in lost), "every flow B received is stored"
    # A lost only what it had received since its last committed flush: its last datagrams before the kill.
    lost_a = {d // 2 for d in lost}
    assert lost_a == set(range(min(lost_a), killed_at)), (sorted(lost_a), killed_at)
    assert min(lost_a) > 0, "A's first committed flush is stored"
    for agent in (a, b):
        assert agent.daemon.terminate() == 0


async def test_an_ipfix_exporter_failing_over_after_its_last_template_is_decoded_exactly(
    tmp_path: Path, db_dsn: str, agents: tuple[Agent, Agent]
) -> None:
    """softflowd sends its IPFIX templates (and the options record with its init time) every 16
    datagrams; the exporter moves from A to B after the last one it sends: B has only data sets.
    B reads what A learned from flow_domains and decodes them into the right minute."""
    a, b = agents
    t0 = time.time() // 60 * 60 - 600 + 1
    packets = [
        Packet(t0 + i * 0.04, f"10.1.{i % 5}.{1 + i // 5 % 200}", "192.0.2.9", 6, 10000 + i, 443, i % 50)
        for i in range(1200)
    ]
    expected: dict[str, int] = {}
    for p in packets:
        key = p.src.rsplit(".", 1)[0] + ".0/24"
        expected[key] = expected.get(key, 0) + p.ip_length
    datagrams = await exported(tmp_path, packets, 10)
    with_templates = [n for n, d in enumerate(datagrams) if any(s < 256 for s, _, _ in _sets(d, True)[1])]
    split = with_templates[-1] + 1
    assert with_templates[0] == 0 and split < len(datagrams), with_templates
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for d in datagrams[:split]:
            sender.sendto(d, ("127.0.0.1", a.flow_port))
            await asyncio.sleep(0.02)
        conn = await asyncpg.connect(db_dsn)
        try:
            # A has flushed (and so shared its templates) before the exporter fails over.
            deadline = time.monotonic() + 60
            while not await conn.fetchval("SELECT count(*) FROM flow_domains WHERE exporter_id = 'r1'"):
                assert time.monotonic() < deadline, "A never shared what it learned of r1"
                await asyncio.sleep(0.25)
            for d in datagrams[split:]:
                sender.sendto(d, ("127.0.0.1", b.flow_port))
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 90
            while (await totals(conn)).keys() != expected.keys() or sum(
                v[0] for v in (await totals(conn)).values()
            ) < sum(expected.values()):
                assert time.monotonic() < deadline, (await totals(conn), expected)
                await asyncio.sleep(0.25)
            await asyncio.sleep(3 * FLUSH)
            stored = await totals(conn)
            minutes = await conn.fetch("SELECT DISTINCT at FROM flow_aggregates")
        finally:
            await conn.close()
    assert {k: v[0] for k, v in stored.items()} == expected
    # Dated by the flows' own (relative) times: B had A's init time too, none placed at arrival.
    assert [int(r["at"].timestamp()) for r in minutes] == [int(t0) // 60 * 60]
    assert await flows_decoded(b) == len(packets) - await flows_decoded(a) > 0
    shared = (await exporters(b))["collector"]["shared"]
    assert shared["installed"] == 1 and shared["published"] == 0, shared  # B learned nothing itself
    for agent in (a, b):
        assert agent.daemon.terminate() == 0


def logged(agent: Agent, event: str) -> list[dict[str, object]]:
    return [line for line in agent.daemon.log_lines() if line.get("event") == event]


async def test_an_exporter_sending_to_both_agents_at_once_is_warned_about(
    tmp_path: Path, agents: tuple[Agent, Agent]
) -> None:
    """Records are not de-duplicated between agents (README: one ispmon destination per exporter);
    an exporter heard by both without a break for six flush intervals is logged by each, once, and
    the end of it too."""
    a, b = agents
    t0 = time.time() // 60 * 60 - 600 + 1
    packets = [
        Packet(t0 + i * 0.04, f"10.1.0.{1 + i % 200}", "192.0.2.9", 6, 10000 + i, 443, 10) for i in range(300)
    ]
    datagrams = await exported(tmp_path, packets, 5)
    warned = "flow_exporter_heard_by_two_agents"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        started = time.monotonic()
        deadline = started + 90
        n = 0
        while not (logged(a, warned) and logged(b, warned)):
            assert time.monotonic() < deadline, "no agent warned of the exporter heard by both"
            for agent in (a, b):  # the same datagram to both, as a second export destination does
                sender.sendto(datagrams[n % len(datagrams)], ("127.0.0.1", agent.flow_port))
            n += 1
            await asyncio.sleep(0.1)
        # Both heard it for at least the six flush intervals: not a fail-over's short overlap.
        assert time.monotonic() - started >= 6 * FLUSH
        shared = (await exporters(a))["collector"]["shared"]
        assert shared["heard_by_other_agents"] == [{"exporter": "r1", "agent": "b"}], shared
    for agent, other in ((a, "b"), (b, "a")):
        lines = logged(agent, warned)
        assert [(x["exporter"], x["other_agent"]) for x in lines] == [("r1", other)], lines
    # The exporter fell silent: each says the overlap ended, once.
    deadline = time.monotonic() + 60
    while not (logged(a, warned + "_ended") and logged(b, warned + "_ended")):
        assert time.monotonic() < deadline, "the end of the overlap was not logged"
        await asyncio.sleep(0.25)
    for agent in (a, b):
        assert len(logged(agent, warned)) == 1 and len(logged(agent, warned + "_ended")) == 1
        assert agent.daemon.terminate() == 0
