"""The flow collector fed by Debian's softflowd (v5, v9, IPFIX) reading pcaps written here, on a
real PostgreSQL, read back through the REST API."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.flows.aggregate import Aggregator
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.collector import Collector
from ispmon.flows.decode import FlowDecoder, _sets
from ispmon.services.context import AppServices
from ispmon.services.flows import TOP_KEYS
from ispmon.store.database import Database
from ispmon.store.flows import FlowStore
from tests.integration.api.documented import assert_documented
from tests.integration.flows.pcap import Packet, write_pcap

Client = TestClient[web.Request, web.Application]
CUSTOMERS = (
    {"id": "c-a", "name": "A", "prefixes": ["10.1.0.0/16"]},
    {"id": "c-b", "name": "B", "prefixes": ["10.1.2.0/24"]},  # nested in A's: the longest match wins
    {"id": "c-c", "name": "C", "prefixes": ["10.9.0.0/16"]},
)


def traffic(t0: float) -> list[Packet]:
    return (
        [Packet(t0 + i, "10.1.2.5", "192.0.2.9", 6, 40000, 443, 100) for i in range(5)]  # B up 700
        + [Packet(t0 + i, "192.0.2.9", "10.1.3.7", 17, 53, 5353, 50) for i in range(3)]  # A down 234
        + [Packet(t0 + i, "10.1.3.7", "10.9.0.1", 6, 50000, 22, 60) for i in range(4)]  # A up, C down 400
    )


class Rig:
    def __init__(self, db: Database, client: Client, collector: Collector, decoder: FlowDecoder) -> None:
        self.db, self.client, self.collector, self.decoder = db, client, collector, decoder

    async def get(self, url: str) -> Any:
        resp = await self.client.get(url)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def documented(self, url: str, template: str) -> Any:
        """GET `url`, its answer checked against what /openapi.json says of `template`."""
        resp = await self.client.get(url)
        assert resp.status == 200, await resp.text()
        return await assert_documented(self.client, "GET", template, resp)


@pytest.fixture
async def rig(db_dsn: str, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    db = await Database.connect(db_dsn, max_size=4)
    decoder = FlowDecoder()
    store = FlowStore(db.pool)
    table = PrefixTable()
    collector = Collector(decoder, Aggregator(table), store.write)
    services = AppServices.build(db, Settings(), flow_decoder=decoder, flow_collector=collector)
    client: Client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        for c in CUSTOMERS:
            assert (await client.post("/customers/", json=c)).status == 201
        resp = await client.post("/flows/exporters", json={"id": "r1", "address": "127.0.0.1", "name": "border"})
        assert resp.status == 201, await resp.text()
        assert (await assert_documented(client, "POST", "/flows/exporters", resp))["sampling"] is None
        table.load(await store.customer_prefixes())
        await collector.start("127.0.0.1", 0, rcvbuf=request.param if hasattr(request, "param") else 8 << 20)
        yield Rig(db, client, collector, decoder)
        await collector.close()
    finally:
        await client.close()
        await db.close()


def softflowd(tmp: Path, pcap: Path, port: int, version: int) -> None:
    # -a: the pcap's clock; -c none: else -r never returns; the pidfile under tmp (never /dev/null)
    done = subprocess.run(
        ["softflowd", "-d", "-a", "-c", "none", "-p", str(tmp / "sfd.pid"), "-r", str(pcap),
         "-n", f"127.0.0.1:{port}", "-v", str(version)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


async def export(rig: Rig, tmp: Path, t0: float, version: int) -> None:
    pcap = tmp / f"f{version}.pcap"
    write_pcap(pcap, traffic(t0))
    assert rig.collector.port is not None
    await asyncio.to_thread(softflowd, tmp, pcap, rig.collector.port, version)
    await asyncio.sleep(0.3)  # the datagrams are on loopback; let the loop read them
    assert await rig.collector.flush(everything=True)


def window(t0: float) -> str:
    since = datetime.fromtimestamp(t0 - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = datetime.fromtimestamp(t0 + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"since={since}&until={until}"


async def customer(rig: Rig, cid: str, t0: float) -> tuple[int, int]:
    body = await rig.get(f"/customers/{cid}/traffic?{window(t0)}")
    return body["download_bytes"], body["upload_bytes"]


@pytest.mark.parametrize("version", [5, 9, 10])
async def test_per_prefix_and_per_customer_bytes_are_exact(rig: Rig, tmp_path: Path, version: int) -> None:
    t0 = time.time() // 60 * 60 - 600 + 1  # ten minutes ago, all in one minute
    await export(rig, tmp_path, t0, version)
    top = await rig.get(f"/flows/top?{window(t0)}&by=dst")
    assert [(i["key"], i["bytes"]) for i in top["items"]] == [
        ("192.0.2.0/24", 700), ("10.9.0.0/24", 400), ("10.1.3.0/24", 234),
    ]  # fmt: skip
    src = await rig.get(f"/flows/top?{window(t0)}&by=src&limit=1")
    assert [(i["key"], i["bytes"], i["packets"]) for i in src["items"]] == [("10.1.2.0/24", 700, 5)]
    assert await customer(rig, "c-a", t0) == (234, 400)
    assert await customer(rig, "c-b", t0) == (0, 700)  # not A's: B's prefix is longer
    assert await customer(rig, "c-c", t0) == (400, 0)
    by_customer = await rig.get(f"/flows/top?{window(t0)}&by=customer")
    assert {i["key"]: i["bytes"] for i in by_customer["items"]} == {"c-a": 634, "c-b": 700, "c-c": 400}
    series = await rig.get(f"/flows/series?{window(t0)}&step=60&customer=c-a")
    assert [(p["at"][:16], p["bytes"]) for p in series["items"]] == [
        (datetime.fromtimestamp(t0 - 1, UTC).strftime("%Y-%m-%dT%H:%M"), 634)
    ]  # bucketed by the flows' own time (ten minutes ago), not by arrival
    stats = (await rig.get("/flows/exporters"))["items"][0]["stats"]
    assert stats["flows"] == 3 and stats["implausible_time"] == 0 and stats["malformed"] == 0
    # Every answer, filled with real data, is what /openapi.json says (exactly: no undeclared key).
    for by in TOP_KEYS:
        body = await rig.documented(f"/flows/top?{window(t0)}&by={by}", "/flows/top")
        assert body["by"] == by and body["items"]
    assert (await rig.documented(f"/flows/series?{window(t0)}&step=60", "/flows/series"))["items"]
    traffic_a = await rig.documented(f"/customers/c-a/traffic?{window(t0)}", "/customers/{customer_id}/traffic")
    assert traffic_a["protocols"] and traffic_a["peers"]
    exporters = await rig.documented("/flows/exporters", "/flows/exporters")
    assert exporters["items"][0]["stats"]["last_seen"] is not None


async def test_garbage_and_unknown_exporters_are_survived_and_counted(rig: Rig, tmp_path: Path) -> None:
    assert rig.collector.port is not None
    addr = ("127.0.0.1", rig.collector.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00", b"\x00\x09" + b"\xff" * 30, b"\x00\x0a\x00\x08", b"\x00\x05" + b"\x00" * 10):
            s.sendto(junk, addr)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))  # an undeclared source
        for _ in range(3):
            s.sendto(b"\x00\x05" + b"\x00" * 70, addr)
    await asyncio.sleep(0.2)
    t0 = time.time() // 60 * 60 - 600 + 1
    await export(rig, tmp_path, t0, 9)
    body = await rig.get("/flows/exporters")
    assert body["unknown_exporters"] == {"packets": 3, "sources": 1}
    assert body["items"][0]["stats"]["malformed"] >= 3
    assert await customer(rig, "c-a", t0) == (234, 400)


async def test_a_restarted_exporter_new_templates_and_sequence_reset(rig: Rig, tmp_path: Path) -> None:
    t0 = time.time() // 60 * 60 - 600 + 1
    await export(rig, tmp_path, t0, 10)
    await export(rig, tmp_path, t0, 10)  # softflowd again: sequence from 0, templates sent anew
    assert await customer(rig, "c-a", t0) == (468, 800)
    stats = (await rig.get("/flows/exporters"))["items"][0]["stats"]
    assert stats["flows"] == 6


async def test_data_before_its_template_is_held_and_decoded_when_it_comes(rig: Rig, tmp_path: Path) -> None:
    """softflowd's v9 datagrams cut in two: the data sets arrive first, the templates after."""
    t0 = time.time() // 60 * 60 - 600 + 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        pcap = tmp_path / "late.pcap"
        write_pcap(pcap, traffic(t0))
        await asyncio.to_thread(softflowd, tmp_path, pcap, sink.getsockname()[1], 9)
        datagrams = []
        try:
            while True:
                datagrams.append(sink.recv(65535))
        except TimeoutError:
            pass
    assert datagrams
    data_first, templates_after = [], []
    for d in datagrams:
        hlen, sets = _sets(d, False)
        data_first.append(d[:hlen] + b"".join(d[a:b] for s, a, b in sets if s >= 256))
        templates_after.append(d[:hlen] + b"".join(d[a:b] for s, a, b in sets if s < 256))
    assert rig.collector.port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in data_first:
            s.sendto(d, ("127.0.0.1", rig.collector.port))
        await asyncio.sleep(0.2)
        assert (await rig.get("/flows/exporters"))["items"][0]["stats"]["pending"] >= 1
        for d in templates_after:
            s.sendto(d, ("127.0.0.1", rig.collector.port))
        await asyncio.sleep(0.2)
    assert await rig.collector.flush(everything=True)
    assert await customer(rig, "c-a", t0) == (234, 400)
    assert (await rig.get("/flows/exporters"))["items"][0]["stats"]["pending"] == 0


async def test_a_flush_retried_after_a_lost_commit_counts_nothing_twice(rig: Rig, tmp_path: Path) -> None:
    store = FlowStore(rig.db.pool)
    calls = 0

    async def commit_then_fail(batch_id: uuid.UUID, buckets: Any) -> bool:
        nonlocal calls
        calls += 1
        written = await store.write(batch_id, buckets)
        if calls == 1:
            raise ConnectionResetError("the answer to COMMIT was lost")
        return written

    rig.collector.write = commit_then_fail
    t0 = time.time() // 60 * 60 - 600 + 1
    pcap = tmp_path / "f.pcap"
    write_pcap(pcap, traffic(t0))
    assert rig.collector.port is not None
    await asyncio.to_thread(softflowd, tmp_path, pcap, rig.collector.port, 5)
    await asyncio.sleep(0.3)
    assert not await rig.collector.flush(everything=True)
    assert await rig.collector.flush(everything=True)
    assert calls == 2
    assert await customer(rig, "c-a", t0) == (234, 400)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("by=bogus", "by"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("since=yesterday", "since"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ],
)
async def test_bad_top_parameters_are_400_naming_the_field(rig: Rig, query: str, field: str) -> None:
    resp = await rig.client.get(f"/flows/top?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_bad_series_and_exporter_input_name_the_field(rig: Rig) -> None:
    resp = await rig.client.get("/flows/series?step=90")
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "step"
    resp = await rig.client.get("/flows/series?protocol=tcp")
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "protocol"
    resp = await rig.client.post("/flows/exporters", json={"id": "r2", "address": "not-an-ip"})
    assert resp.status in (400, 422) and (await resp.json())["errors"][0]["field"] == "address"
    resp = await rig.client.post("/flows/exporters", json={"id": "r2", "address": "127.0.0.1"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "address"  # r1's
    assert (await rig.client.delete("/flows/exporters/nope")).status == 404
    assert (await rig.client.get("/customers/nope/traffic")).status == 404


async def test_a_deleted_exporter_is_then_unknown(rig: Rig, tmp_path: Path) -> None:
    assert (await rig.client.delete("/flows/exporters/r1")).status == 204
    t0 = time.time() // 60 * 60 - 600 + 1
    await export(rig, tmp_path, t0, 5)
    body = await rig.get("/flows/exporters")
    assert body["items"] == [] and body["unknown_exporters"]["packets"] >= 1
    assert await customer(rig, "c-a", t0) == (0, 0)
