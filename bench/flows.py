"""Flow collector figures, bounded loops on loopback only:

1. v5 records/s decoded (netflume via flows/decode.py) and aggregated on one core, no socket
   (goal 50,000/s), beside netflume's own decode alone (the ceiling the adapter sits on);
2. memory of one minute holding 100,000 distinct aggregation keys;
3. the same NetFlow v5 datagrams sent over UDP to our collector and, if Debian's nfdump is
   installed (`apt-get install nfdump`), to `nfcapd` in the same run: CPU per record of each, and
   the datagrams the kernel dropped, once per FLOW_RCVBUF value given (`--rcvbuf`, default the
   kernel's default then 8 MiB);
4. the time from an export packet sent over UDP to its aggregate being queryable from PostgreSQL
   (embedded PostgreSQL in a temporary directory), with an explicit flush and with the
   collector's own flusher.

    PYTHONPATH=src python3 bench/flows.py     # about 50 s
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import psutil

from ispmon.flows import collector as collector_module
from ispmon.flows.aggregate import Aggregator
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.collector import Collector
from ispmon.flows.decode import FlowDecoder, FlowRecord
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.flows import FlowStore

RECORDS = 30
REPEATS = 5  # CPU figures: best of
DATAGRAMS = 2000
MEMORY_KEYS = 100_000
UDP_RATE = 1000  # datagrams/s sent over loopback (30,000 records/s): below what either side decodes
LATENCY_SAMPLES = 20

# The sender runs in its own process so that its CPU is in neither receiver's figure.
SENDER = """
import socket, struct, sys, time
data = open(sys.argv[1], "rb").read()
ports = [int(p) for p in sys.argv[2:]]
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in ports]
off, n, start = 0, 0, time.monotonic()
while off < len(data):
    (size,) = struct.unpack_from("!H", data, off)
    d = data[off + 2 : off + 2 + size]
    off += 2 + size
    for s, p in zip(socks, ports):
        s.sendto(d, ("127.0.0.1", p))
    n += 1
    delay = start + n / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def v5_datagram(rng: random.Random, seq: int, now: int, records: int = RECORDS, src: int | None = None) -> bytes:
    head = struct.pack("!HHIIIIBBH", 5, records, 100_000, now, 0, seq, 0, 0, 0)
    body = b"".join(
        struct.pack(
            "!4s4s4sHHIIIIHHBBBBHHBBH",
            struct.pack("!I", src if src is not None else 0x0A000000 | rng.getrandbits(24)),
            struct.pack("!I", 0xC0000200 | rng.getrandbits(8)),
            b"\0\0\0\0", 1, 2, 10, 1500 * 10, 90_000, 99_000, 40000, 443, 0, 0x18, 6, 0, 0, 0, 24, 24, 0,
        )
        for _ in range(records)
    )
    return head + body


def customers() -> PrefixTable:
    return PrefixTable((f"10.{a}.{b}.0/24", f"c{a}-{b}") for a in range(0, 256, 4) for b in range(0, 256, 2))


def cpu_figures(datagrams: list[bytes], now: int) -> None:
    """Best of REPEATS runs, each with a fresh decoder and aggregator: the machine is shared, and
    the least disturbed run is the one that says what the code costs."""
    runs = []
    for _ in range(REPEATS):
        decoder = FlowDecoder()
        decoder.declare("r1", "192.0.2.1")
        aggregator = Aggregator(customers(), max_keys=100_000)
        start = time.process_time()
        for d in datagrams:
            aggregator.add(decoder.decode(d, "192.0.2.1", now=now))
        runs.append(time.process_time() - start)
    cpu = min(runs)
    total = len(datagrams) * RECORDS
    keys = sum(len(b.counts) for b in aggregator.buckets.values())
    print(f"decoded+aggregated {total} v5 records in {cpu:.3f} s CPU (best of {REPEATS}, worst {max(runs):.3f} s): "
          f"{total / cpu:,.0f} records/s, {len(datagrams) / cpu:,.0f} export packets/s, {keys} keys, "
          f"folded {aggregator.folded_total}")  # fmt: skip
    bare_runs = []
    for _ in range(REPEATS):
        bare = decoder.decoder.__class__()
        start = time.process_time()
        for d in datagrams:
            bare.decode(d, "192.0.2.1")
        bare_runs.append(time.process_time() - start)
    cpu_nf = min(bare_runs)
    print(f"  netflume's Decoder.decode alone: {cpu_nf:.3f} s CPU (best of {REPEATS}), {total / cpu_nf:,.0f} records/s "
          f"({cpu_nf / cpu:.0%} of the above)")  # fmt: skip


def memory_figure(now: int) -> None:
    """One minute, MEMORY_KEYS distinct keys (distinct source /24s); Python heap of the aggregator."""
    records = [
        FlowRecord("r1", float(now), 1, 2, socket.inet_ntoa(struct.pack("!I", 0x0A000000 + i * 256 + 1)),
                   "192.0.2.9", 6, 40000, 443, 1500, 1)
        for i in range(MEMORY_KEYS)
    ]
    table = customers()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    aggregator = Aggregator(table, max_keys=MEMORY_KEYS)
    aggregator.add(records)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    keys = sum(len(b.counts) for b in aggregator.buckets.values())
    print(f"memory: {keys:,} distinct keys in one minute take {used / 2**20:.1f} MiB "
          f"({used / keys:.0f} bytes/key, prefix-name cache included), folded {aggregator.folded_total}")  # fmt: skip


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nfcapd_flows(flowdir: Path) -> int | None:
    out = subprocess.run(["nfdump", "-R", str(flowdir), "-I"], capture_output=True, text=True, timeout=60)
    for line in out.stdout.splitlines():
        if line.startswith("Flows:"):
            return int(line.split(":")[1])
    return None


def socket_buffer(port: int) -> str:
    """The receive buffer `ss` reports for a UDP socket bound to `port` (the kernel's figure)."""
    out = subprocess.run(["ss", "-uanmp", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"rb(\d+)", out)
    return f"{int(match[1]):,} B" if match else "?"


async def udp_figures(datagrams: list[bytes], col: Collector, base: Path) -> None:
    """Both receivers get the same datagrams at UDP_RATE; CPU per record received, and what the
    kernel dropped. Our side is read until its socket is empty (received + dropped = sent, or
    nothing new for 2 s): a deep buffer may still hold datagrams when the sender ends."""
    assert col.receiver is not None and col.port is not None
    receiver = col.receiver
    await asyncio.to_thread(base.mkdir)
    nf: asyncio.subprocess.Process | None = None
    nf_port, flowdir = free_udp_port(), base / "nfcapd"
    if shutil.which("nfcapd") and shutil.which("nfdump"):
        flowdir.mkdir()
        nf = await asyncio.create_subprocess_exec(
            "nfcapd", "-b", "127.0.0.1", "-p", str(nf_port), "-w", str(flowdir), "-t", "3600",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # its socket is bound
    payload = base / "datagrams.bin"
    payload.write_bytes(b"".join(struct.pack("!H", len(d)) + d for d in datagrams))
    ports = [str(col.port)] + ([str(nf_port)] if nf is not None else [])
    nf_proc = psutil.Process(nf.pid) if nf is not None else None
    nf_cpu0 = sum(nf_proc.cpu_times()[:2]) if nf_proc else 0.0
    seen0, drops0, wakeups0, cpu0 = receiver.datagrams, receiver.kernel_drops, receiver.wakeups, time.process_time()
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"RATE = {UDP_RATE}\n" + SENDER, str(payload), *ports
    )
    await sender.wait()
    # One datagram more after the run, from an undeclared port: it carries the final drop count.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\0\5", ("127.0.0.1", col.port))
        last, still = -1, time.monotonic()
        while receiver.datagrams - seen0 + receiver.kernel_drops - drops0 < len(datagrams) + 1:
            if receiver.datagrams != last:
                last, still = receiver.datagrams, time.monotonic()
            elif time.monotonic() - still > 2:
                break
            await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu0
    got = receiver.datagrams - seen0 - 1
    dropped = receiver.kernel_drops - drops0
    ours = got * RECORDS
    print(f"UDP at {UDP_RATE} datagrams/s: ispmon received {got}/{len(datagrams)} datagrams, kernel dropped "
          f"{dropped} (receive buffer {receiver.receive_buffer:,} B, FLOW_RCVBUF={receiver.requested_buffer}; "
          f"{(receiver.datagrams - seen0) / max(receiver.wakeups - wakeups0, 1):.1f} datagrams/wakeup), "
          f"{cpu:.3f} s CPU, {cpu / max(ours, 1) * 1e6:.1f} us CPU/record")  # fmt: skip
    if nf is None or nf_proc is None:
        print("  nfcapd: not installed (apt-get install nfdump), not compared")
        return
    nf_buffer = socket_buffer(nf_port)
    nf_cpu = sum(nf_proc.cpu_times()[:2]) - nf_cpu0
    nf.send_signal(signal.SIGTERM)
    await asyncio.wait_for(nf.wait(), 30)
    flows = nfcapd_flows(flowdir) or 0
    print(f"  nfcapd (nfdump {nfcapd_version()}): stored {flows}/{len(datagrams) * RECORDS} records, "
          f"{nf_cpu:.3f} s CPU, {nf_cpu / max(flows, 1) * 1e6:.1f} us CPU/record, "
          f"receive buffer {nf_buffer}")  # fmt: skip


def nfcapd_version() -> str:
    out = subprocess.run(["nfcapd", "-V"], capture_output=True, text=True, timeout=10)
    return (out.stdout + out.stderr).strip().split()[-1]


async def visible(store: FlowStore, prefix: str) -> bool:
    return bool(await store.pool.fetchval("SELECT true FROM flow_aggregates WHERE src_prefix = $1 LIMIT 1", prefix))


async def latency_figures(col: Collector, store: FlowStore) -> None:
    """A one-record datagram whose flow ended in a closed minute (two minutes ago); a fresh source
    /24 each time so its row is recognisable."""
    assert col.receiver is not None and col.port is not None
    receiver = col.receiver
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(2)
    samples = []

    async def send(i: int) -> tuple[float, str]:
        src = 0x64400000 + i * 256  # 100.64.x.0/24, a /24 nothing else uses
        now = int(time.time()) - 120
        sock.sendto(v5_datagram(rng, 0, now, records=1, src=src), ("127.0.0.1", col.port))
        return time.perf_counter(), f"{socket.inet_ntoa(struct.pack('!I', src))}/24"

    for i in range(LATENCY_SAMPLES):
        seen = receiver.datagrams
        t0, prefix = await send(i)
        while receiver.datagrams == seen:  # noqa: ASYNC110 (polled: the protocol has no event)
            await asyncio.sleep(0.0002)
        await col.flush()
        while not await visible(store, prefix):  # noqa: ASYNC110 (polling PostgreSQL is the figure)
            await asyncio.sleep(0.0002)
        samples.append(time.perf_counter() - t0)
    median, worst = statistics.median(samples) * 1e3, max(samples) * 1e3
    print(f"export packet -> aggregate queryable, flush run at once: median {median:.1f} ms, max {worst:.1f} ms "
          f"over {LATENCY_SAMPLES} (receive, decode, aggregate, COPY, SELECT)")  # fmt: skip
    t0, prefix = await send(LATENCY_SAMPLES)
    deadline = t0 + collector_module.FLUSH_EVERY + 10
    while not await visible(store, prefix) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    took = time.perf_counter() - t0
    print(f"  with the collector's own flusher (every {collector_module.FLUSH_EVERY:.0f} s): {took:.2f} s; a flow "
          f"in the current minute waits for the minute's end + {collector_module.GRACE:.0f} s grace first")  # fmt: skip
    sock.close()


async def database_figures(datagrams: list[bytes], rcvbufs: list[int]) -> None:
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-flows-"))
    server = EmbeddedPostgres(base / "pg")
    dsn = await asyncio.to_thread(server.start)
    db = await Database.connect(dsn, max_size=4)
    try:
        store = FlowStore(db.pool)
        await store.ensure_partitions(datetime.now(UTC).date())
        for i, rcvbuf in enumerate(rcvbufs):
            decoder = FlowDecoder()
            decoder.declare("r1", "127.0.0.1")
            col = Collector(decoder, Aggregator(customers()), store.write)
            await col.start("127.0.0.1", 0, rcvbuf=rcvbuf)
            try:
                await udp_figures(datagrams, col, base / f"udp{i}")
                if i == len(rcvbufs) - 1:
                    await latency_figures(col, store)
            finally:
                await col.close()
    finally:
        await db.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    from ispmon.cli_support import run_coro
    from ispmon.logging import configure_logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rcvbuf", default="0,8388608",
                        help="FLOW_RCVBUF values to run the UDP comparison with, in turn (0: the kernel's default)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="event loop (the daemon runs on uvloop)")
    args = parser.parse_args()
    rcvbufs = [int(v) for v in args.rcvbuf.split(",")]

    configure_logging("error", "console")  # the figures only
    rng = random.Random(1)
    now = int(time.time())
    datagrams = [v5_datagram(rng, i * RECORDS, now) for i in range(DATAGRAMS)]
    cpu_figures(datagrams, now)
    memory_figure(now)
    # the UDP run gets its own datagrams: flows ending now, not when the script started
    now = int(time.time())
    udp = [v5_datagram(rng, i * RECORDS, now) for i in range(DATAGRAMS)]
    async def figures() -> int:
        await database_figures(udp, rcvbufs)
        return 0

    if args.loop == "uvloop":
        run_coro(figures())
    else:
        asyncio.run(figures())


if __name__ == "__main__":
    main()
