"""SNMP polling benchmark: N devices x M interfaces served by real snmpd agents, polled at a fixed
interval by ispmon's Poller, and by Prometheus snmp_exporter (if_mib) at the same rate beside it.

    python bench/snmp.py [--agents 4] [--veths 250] [--interval 10] [--duration 60]   # as root

Each agent is Debian's snmpd in a network namespace of its own with `--veths` veth pairs (2 real
interfaces each, plus lo and the uplink). Figures printed, over the measured window (after the
first discovery and one full cycle):

* interface polls/s, and this process's CPU per interface poll (SNMP, counter maths, the COPY
  client side; the PostgreSQL server and snmpd are other processes and not counted);
* poll-cycle lateness p50/p99 (a device's poll start behind its slot);
* this process's RSS growth per interface (engine, per-interface state, readings);
* snmp_exporter's CPU per interface poll, scraped with `module=if_mib` at the same interval
  (when `prometheus-snmp-exporter` is installed), and the projection for 10,000 interfaces every
  60 s as a share of one core.

Loopback and namespaces only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.network.agents import COMMUNITY, Agent, snmpd_namespace  # noqa: E402

from ispmon.network.devices import build_device  # noqa: E402
from ispmon.network.poller import Poller  # noqa: E402
from ispmon.network.snmp import SnmpClient  # noqa: E402
from ispmon.store.database import Database  # noqa: E402
from ispmon.store.embedded import EmbeddedPostgres  # noqa: E402
from ispmon.store.interfaces import METRIC_COLUMNS  # noqa: E402
from ispmon.store.writer import BatchWriter  # noqa: E402

EXPORTER_CONFIG = """
if_mib:
  version: 2
  auth:
    community: {community}
  walk: [1.3.6.1.2.1.2, 1.3.6.1.2.1.31.1.1]
  metrics:
{metrics}
"""
# The if_mib module's counters and labels, numeric (no MIBs here): what an operator graphs.
EXPORTER_METRICS = [
    ("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "counter"),
    ("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10", "counter"),
    ("ifHCInUcastPkts", "1.3.6.1.2.1.31.1.1.1.7", "counter"),
    ("ifHCOutUcastPkts", "1.3.6.1.2.1.31.1.1.1.11", "counter"),
    ("ifInErrors", "1.3.6.1.2.1.2.2.1.14", "counter"),
    ("ifOutErrors", "1.3.6.1.2.1.2.2.1.20", "counter"),
    ("ifInDiscards", "1.3.6.1.2.1.2.2.1.13", "counter"),
    ("ifOutDiscards", "1.3.6.1.2.1.2.2.1.19", "counter"),
    ("ifAdminStatus", "1.3.6.1.2.1.2.2.1.7", "gauge"),
    ("ifOperStatus", "1.3.6.1.2.1.2.2.1.8", "gauge"),
    ("ifHighSpeed", "1.3.6.1.2.1.31.1.1.1.15", "gauge"),
]


def _exporter_yaml() -> str:
    lines = []
    for name, oid, kind in EXPORTER_METRICS:
        lines += [f"  - name: {name}", f"    oid: {oid}", f"    type: {kind}", "    indexes:",
                  "    - labelname: ifIndex", "      type: gauge"]
    return EXPORTER_CONFIG.format(community=COMMUNITY, metrics="\n".join("  " + x for x in lines))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ours(db: Database, agents: list[Agent], interval: float, duration: float) -> dict[str, float]:
    specs = [
        build_device({"id": f"bench-{i}", "name": f"bench {i}", "address": f"{a.address}:{a.port}",
                      "community": COMMUNITY, "poll_interval": interval, "timeout": 2, "retries": 1})
        for i, a in enumerate(agents)
    ]
    for spec in specs:
        await db.devices.upsert(spec)
    me = psutil.Process()
    rss0 = me.memory_info().rss
    writer = BatchWriter(db.pool, "interface_metrics", METRIC_COLUMNS)
    writer.start()
    client = SnmpClient()
    poller = Poller(db, client, writer, concurrency=100)
    poller.start(specs)
    try:
        # Warm-up: discovery and a first reading of every device, then one more cycle.
        await asyncio.sleep(interval * 2 + 1)
        interfaces = sum(len(s.by_index) for s in poller.devices.values())
        rss1 = me.memory_info().rss
        polls0, late0 = poller.stats.interface_polls, len(poller.stats.lateness)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(duration)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        polls = poller.stats.interface_polls - polls0
        lateness = poller.stats.lateness[late0:]
    finally:
        await poller.close()
        await writer.close()
        client.close()
    return {
        "interfaces": interfaces,
        "interface_polls_per_s": polls / wall,
        "cpu_us_per_interface_poll": cpu / polls * 1e6 if polls else float("nan"),
        "cpu_share": cpu / wall,
        "lateness_p50_ms": _pct(lateness, 0.5) * 1000,
        "lateness_p99_ms": _pct(lateness, 0.99) * 1000,
        "rss_bytes_per_interface": (rss1 - rss0) / interfaces if interfaces else float("nan"),
        "failures": poller.stats.failures,
        "samples": poller.stats.samples,
        "written": writer.stats.written,
    }


async def exporter(
    agents: list[Agent], interval: float, duration: float, tmp: Path
) -> dict[str, Any] | None:
    binary = shutil.which("prometheus-snmp-exporter")
    if binary is None:
        return None
    config = tmp / "snmp.yml"
    config.write_text(_exporter_yaml())
    port = 19116
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        watched = psutil.Process(proc.pid)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/snmp"
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)

            errors: list[str] = []

            async def scrape(agent: Agent) -> int:
                params = {"target": f"{agent.address}:{agent.port}", "module": "if_mib"}
                async with http.get(url, params=params) as resp:
                    body = await resp.text()
                    if resp.status != 200 or "ifHCInOctets{" not in body:
                        errors.append(f"{resp.status} {body[:200]}")
                        return 0
                return body.count("ifHCInOctets{")

            await asyncio.gather(*(scrape(a) for a in agents))  # warm-up
            cpu0 = sum(watched.cpu_times()[:2])
            wall0, scraped = time.monotonic(), 0
            deadline = wall0 + duration
            while time.monotonic() < deadline:
                started = time.monotonic()
                scraped += sum(await asyncio.gather(*(scrape(a) for a in agents)))
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
            cpu = sum(watched.cpu_times()[:2]) - cpu0
            wall = time.monotonic() - wall0
    finally:
        proc.terminate()
        await proc.wait()
    return {"interface_polls_per_s": scraped / wall,
            "cpu_us_per_interface_poll": cpu / scraped * 1e6 if scraped else float("nan"),
            "cpu_share": cpu / wall, "errors": len(errors), "first_error": errors[0] if errors else ""}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--veths", type=int, default=250, help="veth pairs per agent (2 interfaces each)")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/snmp.py needs root (network namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="ispmon-bench-snmp-"))
    pg = EmbeddedPostgres(tmp / "pg")
    with contextlib.ExitStack() as stack:
        agents = []
        for i in range(args.agents):
            (tmp / f"a{i}").mkdir()
            agents.append(stack.enter_context(snmpd_namespace(tmp / f"a{i}", args.veths, tag=chr(97 + i))))
        dsn = pg.start()
        db = await Database.connect(dsn, max_size=4)
        try:
            result = await ours(db, agents, args.interval, args.duration)
            theirs = await exporter(agents, args.interval, args.duration, tmp)
        finally:
            await db.close()
            pg.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"agents {args.agents}, interfaces {result['interfaces']:.0f}, interval {args.interval:g} s, "
          f"measured {args.duration:g} s")
    print(f"ispmon:        {result['interface_polls_per_s']:8.1f} interface polls/s  "
          f"{result['cpu_us_per_interface_poll']:7.1f} us CPU each  ({result['cpu_share'] * 100:.1f} % of a core)  "
          f"lateness p50 {result['lateness_p50_ms']:.1f} ms p99 {result['lateness_p99_ms']:.1f} ms  "
          f"RSS {result['rss_bytes_per_interface']:.0f} B/interface  failures {result['failures']}  "
          f"rows written {result['written']}")
    per_10k = result["cpu_us_per_interface_poll"] * 10_000 / 60 / 1e6
    print(f"  projected: 10,000 interfaces every 60 s = {per_10k * 100:.1f} % of one core (goal <= 25 %)")
    if theirs is None:
        print("snmp_exporter: not installed (apt-get install prometheus-snmp-exporter)")
    else:
        print(f"snmp_exporter: {theirs['interface_polls_per_s']:8.1f} interface polls/s  "
              f"{theirs['cpu_us_per_interface_poll']:7.1f} us CPU each  ({theirs['cpu_share'] * 100:.1f} % of a core)"
              f"  failed scrapes {theirs['errors']} {theirs['first_error'][:120]}")


if __name__ == "__main__":
    try:
        import uvloop  # the daemon's loop (cli._run)
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
