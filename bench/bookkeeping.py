"""CPU per check of everything around the probe, two source trees side by side.

    mkdir -p /tmp/old && git archive main | tar -x -C /tmp/old
    python3 bench/bookkeeping.py --old /tmp/old/src [--reps 5] [--n 50000]

The probe is replaced by one that returns UP at once, so what is measured is the per-check path
the daemon runs for every result: `Monitor.check` (per-endpoint lock, maintenance lookup,
`run_check` and `run_attempt` with their timers and budgets, the outage state machine, the
alert engine hook, the history row and the writer's buffer append) and, separately, the pure
state machine `transition` on a steady UP endpoint. No database: the writer's buffer is emptied
between rounds instead of flushed. Each tree runs in a fresh child process pinned to CPU 0;
printed: every repetition, then medians and new/old.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENDPOINTS = 1000


async def child(n: int) -> None:
    from datetime import UTC, datetime

    from ispmon.availability.endpoints import build_endpoint
    from ispmon.availability.monitor import Monitor
    from ispmon.availability.outages import EndpointState, OutagePolicy, transition
    from ispmon.models import ProbeResult, Protocol, Status
    from ispmon.probes.base import PROBES, ProbeContext
    from ispmon.store.writer import BatchWriter

    async def instant(endpoint: Any, timeout: float, ctx: Any) -> ProbeResult:
        return ProbeResult(Status.UP, 0.1, details={"bytes_read": 0})

    PROBES[Protocol.TCP] = instant
    history = BatchWriter(None, "status_history", ("a",), max_buffer=10**7)  # type: ignore[arg-type]
    events = BatchWriter(None, "outage_events", ("a",), max_buffer=10**7)  # type: ignore[arg-type]
    monitor = Monitor(
        ctx=ProbeContext(), policy=OutagePolicy(), history=history, events=events, outages=None  # type: ignore[arg-type]
    )
    specs = [
        build_endpoint({"id": f"e{i}", "name": f"e{i}", "url": "127.0.0.1:9", "protocol": "tcp"})
        for i in range(ENDPOINTS)
    ]
    monitor.load(specs, {}, {})
    runtimes = list(monitor.runtimes.values())

    async def rounds(count: int) -> None:
        for _ in range(count // ENDPOINTS):
            await asyncio.gather(*(monitor.check(r) for r in runtimes))
            history._buf.clear()

    await rounds(5 * ENDPOINTS)
    t0 = time.process_time()
    await rounds(n)
    check_us = (time.process_time() - t0) / n * 1e6

    state, result = EndpointState(status=Status.UP), ProbeResult(Status.UP, 0.1)
    policy, now = OutagePolicy(), datetime.now(UTC)
    for _ in range(50):
        state, _events = transition(state, result, now, policy)
    t0 = time.process_time()
    for _ in range(n):
        state, _events = transition(state, result, now, policy)
    transition_us = (time.process_time() - t0) / n * 1e6
    print(json.dumps({"check": check_us, "transition": transition_us}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the old tree's src directory")
    parser.add_argument("--new", default=str(HERE.parent / "src"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n", type=int, default=50000)
    args = parser.parse_args()
    trees = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    figures: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.reps):
        for label, src in trees.items():
            out = subprocess.run(
                ["taskset", "-c", "0", sys.executable, __file__, "--child", str(args.n)],
                env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True, check=True,
                cwd=tempfile.gettempdir(),
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            for what, us in r.items():
                figures.setdefault((what, label), []).append(us)
            print(
                f"  rep {rep + 1} {label}: check {r['check']:6.1f} µs, transition {r['transition']:5.1f} µs",
                flush=True,
            )
    print(f"\n== CPU µs per check around an instant probe, median of {args.reps}, CPU 0")
    print("part                   old     new  new/old")
    for what in ("check", "transition"):
        old, new = statistics.median(figures[(what, "old")]), statistics.median(figures[(what, "new")])
        print(f"{what:18} {old:7.1f} {new:7.1f}  {new / old:7.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        import uvloop

        uvloop.run(child(int(sys.argv[2])))
    else:
        main()
