"""CPU per probe of one protocol's probe (through `run_check`), two source trees side by side.

    mkdir -p /tmp/old && git archive main | tar -x -C /tmp/old
    python3 bench/probe_cost.py --old /tmp/old/src [--kinds http,tcp] [--reps 5] [--n 5000]

Each repetition runs the old tree's probe, then this tree's, each in a fresh child process pinned
to CPU 0 (the targets of bench/targets.py run on CPU 1), doing `--n` checks of one loopback
endpoint with `--concurrency` in flight, after 500 warm-up checks. CPU is the child's own
process time over the measured checks. Printed: every repetition, then per protocol the median
of each tree and new/old. The machine is shared: only the ratio within one run means anything.
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
URLS = {
    "http": "http://127.0.0.1:{http}/ok",
    "tcp": "127.0.0.1:{tcp}",
    "dns": "dns://127.0.0.1:{dns}/bench.test?type=A",
    "icmp": "127.0.0.1",
}


async def child(kind: str, url: str, n: int, concurrency: int) -> None:
    from ispmon.availability.endpoints import build_endpoint
    from ispmon.models import Status
    from ispmon.probes.base import ProbeContext, run_check

    fields: dict[str, Any] = {"name": "bench", "url": url, "timeout": 2, "retries": 0}
    if kind in ("tcp", "icmp"):
        fields["protocol"] = kind
    if kind == "icmp":
        fields["packet_count"] = 1
    endpoint = build_endpoint(fields)
    ctx = ProbeContext()
    sem = asyncio.Semaphore(concurrency)
    down = 0

    async def one() -> None:
        nonlocal down
        async with sem:
            result = await run_check(endpoint, ctx)
        down += result.status is not Status.UP

    await asyncio.gather(*(one() for _ in range(500)))
    down = 0
    t0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu = time.process_time() - t0
    await ctx.close()
    print(json.dumps({"us": cpu / n * 1e6, "down": down}))


def run_child(src: str, kind: str, url: str, n: int, concurrency: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, __file__, "--child", kind, url, str(n), str(concurrency)],
        env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the old tree's src directory")
    parser.add_argument("--new", default=str(HERE.parent / "src"))
    parser.add_argument("--kinds", default="http,tcp")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from throughput import THEIRS, pin, targets

    pin(0, THEIRS)
    trees = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    figures: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as work, targets(Path(work)) as ports:
        for rep in range(args.reps):
            for kind in args.kinds.split(","):
                url = URLS[kind].format(**ports)
                for label, src in trees.items():
                    r = run_child(src, kind, url, args.n, args.concurrency)
                    figures.setdefault((kind, label), []).append(r["us"])
                    print(
                        f"  rep {rep + 1} {kind:4} {label}: {r['us']:6.0f} µs/check ({r['down']} not up)",
                        flush=True,
                    )
    print(f"\n== CPU µs per check, median of {args.reps}, {args.concurrency} in flight, CPU 0")
    print("protocol     old     new  new/old")
    for kind in args.kinds.split(","):
        old, new = statistics.median(figures[(kind, "old")]), statistics.median(figures[(kind, "new")])
        print(f"{kind:8} {old:7.0f} {new:7.0f}  {new / old:7.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        import uvloop

        uvloop.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    else:
        main()
