"""Response-time inflation under load: measured response time minus a target's known delay.

    python bench/inflation.py [--rates 1000,2000] [--duration 20] [--reps 1]

Issue 10 §4: p99 at most 3 ms at 1,000 mixed checks/s and at most 5 ms at 2,000/s
(blackbox_exporter measured 17 ms at 1,000/s on this kind of machine). Per offered rate, the full
pipeline (scheduler, probes, state machine, batched COPY into PostgreSQL) runs equal shares of
HTTP, TCP, DNS and ICMP checks plus 100 HTTP endpoints at 1 s against bench/targets.py's /delay
(answers after a known delay); every delayed check's result is read once (by its checked_at), and
the inflation percentiles are printed with the checks done, the shed count (late checks skipped,
not queued) and the load average.

Anchor, same run, same CPU: a bare uvloop loop with one aiohttp session doing only the delayed
GETs at the same 100/s, no ispmon code and no other checks. Its inflation is what this machine
(shared by other developers) adds by itself; the difference is what the monitor's load adds.

ispmon's process is pinned to CPU 0; targets, dnsmasq and the bench's own PostgreSQL to CPU 1.
Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from ispmon.daemon import freeze_long_lived
from ispmon.logging import configure_logging
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from throughput import OURS, THEIRS, Rig, cpu_seconds, make_endpoints, pin, pin_postgres, targets

DELAYED = 100  # endpoints at 1 s against /delay


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def runqueue_wait() -> float:
    """Seconds the event loop's thread has spent runnable but waiting for a CPU (schedstat): when
    other processes take the core, this grows and every timing the loop makes inflates with it."""
    with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as fh:
        return int(fh.read().split()[1]) / 1e9


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


async def ispmon_phase(rig: Rig, ports: dict[str, Any], rate: int, duration: float) -> dict[str, Any]:
    rig.clear()
    await asyncio.sleep(0.5)
    per_kind = max(0, rate - DELAYED) * 2 // 4  # interval 2 s
    specs = [
        s
        for kind in ("http", "tcp", "dns", "icmp")
        for s in make_endpoints(kind, per_kind, 2.0, ports, f"m{rate}")
    ]
    specs += make_endpoints("delay", DELAYED, 1.0, ports, f"d{rate}")
    for spec in specs:
        rig.monitor.upsert(spec)
    freeze_long_lived()
    await asyncio.sleep(3.0)
    delayed = [rt for key, rt in rig.monitor.runtimes.items() if key.startswith(f"d{rate}-")]
    stats = rig.monitor.scheduler.stats
    seen: dict[int, Any] = {}
    samples: list[float] = []
    c0, cpu0, t0, wait0 = stats.completed, cpu_seconds(), time.monotonic(), runqueue_wait()
    shed0 = stats.skipped_late + stats.skipped_overrun
    failed = 0
    while time.monotonic() < t0 + duration:
        await asyncio.sleep(0.2)
        for rt in delayed:
            last = rt.last
            if last is None or seen.get(id(rt)) is last[0]:
                continue
            seen[id(rt)] = last[0]
            if last[1].response_time_ms is None or last[1].status.value != "up":
                failed += 1
                continue
            samples.append(last[1].response_time_ms - ports["delay_ms"])
    elapsed = time.monotonic() - t0
    done = stats.completed - c0
    return {
        "done_per_s": done / elapsed,
        "cpu_share": (cpu_seconds() - cpu0) / elapsed,
        "waiting": (runqueue_wait() - wait0) / elapsed,
        "shed": stats.skipped_late + stats.skipped_overrun - shed0,
        "p50": pct(samples, 0.5),
        "p99": pct(samples, 0.99),
        "samples": len(samples),
        "failed": failed,
    }


async def bare_anchor(ports: dict[str, Any], duration: float) -> dict[str, Any]:
    """The delayed GETs alone, 100/s, from a bare loop: the machine's own noise."""
    url = f"http://127.0.0.1:{ports['http']}/delay"
    samples: list[float] = []
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            start = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
            samples.append((time.perf_counter() - start) * 1000 - ports["delay_ms"])

        tasks = set()
        loop = asyncio.get_running_loop()
        t0, wait0 = loop.time(), runqueue_wait()
        n = 0
        while loop.time() < t0 + duration:
            due = t0 + n / DELAYED
            await asyncio.sleep(max(0.0, due - loop.time()))
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks, return_exceptions=True)
    waiting = (runqueue_wait() - wait0) / (loop.time() - t0)
    return {"p50": pct(samples, 0.5), "p99": pct(samples, 0.99), "samples": len(samples), "waiting": waiting}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,2000", help="offered checks/s (mixed plus the delayed ones)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per phase")
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    configure_logging("error", "console")
    pin(0, OURS)
    workdir = Path(tempfile.mkdtemp(prefix="ispmon-inflation-"))
    embedded = EmbeddedPostgres(workdir)
    dsn = await asyncio.to_thread(embedded.start)
    pin_postgres(embedded.pgdata, THEIRS)
    db = await Database.connect(dsn, max_size=4)
    rig = Rig(db, 500)
    try:
        with targets(workdir) as ports:
            await rig.start()
            print(
                f"target delay {ports['delay_ms']} ms; ispmon on CPU {sorted(OURS)}, the rest on {sorted(THEIRS)}"
            )
            for rep in range(args.reps):
                for rate in (int(r) for r in args.rates.split(",")):
                    r = await ispmon_phase(rig, ports, rate, args.duration)
                    print(
                        f"rep {rep + 1} ispmon offered {rate:5}/s: done {r['done_per_s']:6.0f}/s, "
                        f"CPU {r['cpu_share'] * 100:3.0f}% of a core, waited for it {r['waiting'] * 100:3.0f}%, "
                        f"shed {r['shed']}, inflation "
                        f"p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms ({r['samples']} samples, "
                        f"{r['failed']} not up)  [{load()}]",
                        flush=True,
                    )
                rig.clear()
                await asyncio.sleep(1.0)
                a = await bare_anchor(ports, args.duration)
                print(
                    f"rep {rep + 1} anchor: bare loop, the {DELAYED}/s delayed GETs alone: inflation "
                    f"p50 {a['p50']:.2f} ms p99 {a['p99']:.2f} ms ({a['samples']} samples), waited for the CPU "
                    f"{a['waiting'] * 100:.0f}% of the time  [{load()}]",
                    flush=True,
                )
    finally:
        await rig.stop()
        await db.close()
        await asyncio.to_thread(embedded.stop)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
