"""What a collector learned of an exporter (IPFIX templates, init time) shared through
`flow_domains` on a real PostgreSQL: a collector that starts empty (another agent, or this one
after a restart) decodes data sets whose template it never received; a database that is away only
delays the sharing; a layout learned from the wire again replaces the stored one."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ispmon.flows.aggregate import Aggregator
from ispmon.flows.collector import Collector
from ispmon.flows.decode import FlowDecoder, _sets
from ispmon.flows.shared import DomainShare
from ispmon.store.database import Database
from ispmon.store.flow_domains import FlowDomainStore
from ispmon.store.flows import FlowStore
from tests.integration.flows.pcap import Packet, write_pcap
from tests.integration.flows.test_softflowd import softflowd

SOURCE = "127.0.0.1"


def packets(t0: float) -> list[Packet]:
    return [
        Packet(t0 + i * 0.04, f"10.1.{i % 5}.{1 + i // 5}", "192.0.2.9", 6, 10000 + i, 443, i % 50)
        for i in range(600)
    ]


async def ipfix(tmp: Path, t0: float) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        write_pcap(tmp / "f.pcap", packets(t0))
        await asyncio.to_thread(softflowd, tmp, tmp / "f.pcap", sink.getsockname()[1], 10)
        out = []
        try:
            while True:
                out.append(sink.recv(65535))
        except TimeoutError:
            pass
    return out


def after_last_template(datagrams: list[bytes]) -> int:
    with_templates = [n for n, d in enumerate(datagrams) if any(s < 256 for s, _, _ in _sets(d, True)[1])]
    assert with_templates and with_templates[-1] + 1 < len(datagrams), with_templates
    return with_templates[-1] + 1


def collector(db: Database, agent: str) -> Collector:
    decoder = FlowDecoder()
    decoder.declare("r1", SOURCE)
    share = DomainShare(decoder, FlowDomainStore(db.pool), agent)
    return Collector(decoder, Aggregator(), FlowStore(db.pool).write, share=share)


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[Database]:
    db = await Database.connect(db_dsn, max_size=4)
    await FlowStore(db.pool).put_exporter({"id": "r1", "address": SOURCE})
    try:
        yield db
    finally:
        await db.close()


async def stored_bytes(db: Database) -> tuple[int, list[float]]:
    total = await db.pool.fetchval("SELECT coalesce(sum(bytes), 0)::bigint FROM flow_aggregates")
    minutes = [r["at"].timestamp() for r in await db.pool.fetch("SELECT DISTINCT at FROM flow_aggregates")]
    return int(total), minutes


async def test_a_collector_that_starts_after_the_templates_decodes_their_data(
    db: Database, tmp_path: Path
) -> None:
    t0 = time.time() // 60 * 60 - 600 + 1
    datagrams = await ipfix(tmp_path, t0)
    split = after_last_template(datagrams)
    first = collector(db, "a")
    for d in datagrams[:split]:
        first.received(d, SOURCE)
    assert await first.flush(everything=True)
    # A new collector (another agent, or this one restarted): only data sets reach it.
    second = collector(db, "b")
    for d in datagrams[split:]:
        second.received(d, SOURCE)
    state = second.decoder.exporters[SOURCE]
    assert state.flows == 0 and len(state.pending) == len(datagrams) - split, "held for want of a template"
    assert await second.flush(everything=True)
    assert not state.pending and state.implausible_time == 0
    assert await stored_bytes(db) == (sum(p.ip_length for p in packets(t0)), [t0 - 1])
    assert second.share is not None and second.share.installed == 1
    # The second one learned nothing from the wire: it wrote nothing back.
    assert await db.pool.fetchval("SELECT agent_id FROM flow_domains") == "a"


async def test_a_database_away_delays_the_sharing_and_loses_nothing(
    db: Database, db_dsn: str, tmp_path: Path
) -> None:
    t0 = time.time() // 60 * 60 - 600 + 1
    datagrams = await ipfix(tmp_path, t0)
    split = after_last_template(datagrams)
    away = await Database.connect(db_dsn, max_size=1)
    await away.close()  # every query on it fails as a lost connection does
    decoder = FlowDecoder()
    decoder.declare("r1", SOURCE)
    share = DomainShare(decoder, FlowDomainStore(away.pool), "a")
    for d in datagrams[:split]:
        decoder.decode(d, SOURCE)
    assert await share.sync() == [] and share.failures == 1
    assert decoder.notes, "what was learned is kept for the next try"
    share.store = FlowDomainStore(db.pool)  # the database is back
    assert await share.sync() == [] and share.published == 1 and not decoder.notes
    row = await db.pool.fetchrow("SELECT templates, options FROM flow_domains WHERE exporter_id = 'r1'")
    assert set(row["templates"]) == {"256", "1024", "1025", "2048", "2049"}  # softflowd's: 1 options, 4 data
    assert row["options"]["init_ms"] == decoder.exporters[SOURCE].init_ms[0]


async def test_a_layout_learned_from_the_wire_replaces_the_stored_one(db: Database, tmp_path: Path) -> None:
    t0 = time.time() // 60 * 60 - 600 + 1
    datagrams = await ipfix(tmp_path, t0)
    # A wrong layout for template 1024 stored by some agent earlier.
    await db.pool.execute(
        "INSERT INTO flow_domains (exporter_id, domain, templates, agent_id) VALUES ('r1', 0, $1, 'x')",
        {"1024": [[["src_port", "uint", 2]], False]},
    )
    mine = collector(db, "b")
    for d in datagrams:
        mine.received(d, SOURCE)
    assert await mine.flush(everything=True)
    assert (await stored_bytes(db))[0] == sum(p.ip_length for p in packets(t0))
    # What it learned replaced the stored layout (the exporter's word is the latest).
    stored = await db.pool.fetchval("SELECT templates FROM flow_domains WHERE exporter_id = 'r1'")
    assert stored["1024"][0][0] == ["src_addr", "ipv4", 4]
