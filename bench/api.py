"""API benchmark: the REST API under load while the monitor runs 1,000 checks/s.

    apt-get install wrk                 # the load generator (Debian's wrk 4.1)
    python bench/api.py                 # about 2 minutes; embedded PostgreSQL in a temporary directory
    python bench/api.py --profile       # also prints where the list route's CPU goes (cProfile)
    python bench/api.py --before /tmp/old   # the same phases on an older tree's src/ first, then
                                            # this one's, and a table of both with the ratios

ispmon (monitor + API, one process, uvloop) is pinned to CPU 0; wrk, the check targets
(bench/targets.py) and PostgreSQL to CPU 1, so the CPU share printed is ispmon's alone. The
monitor runs 1,000 endpoints (500 HTTP, 500 TCP, interval 1 s; --checks), and the API lists the
same endpoints from PostgreSQL. For `GET /services/?limit=50`, `/livez` and `/services/{id}/status`,
each with 100 and 2,000 concurrent keep-alive connections, it prints requests/s, latency p50/p99
(wrk's), ispmon's CPU share, the checks/s done, and the scheduler's lag p50/p99 during that load
(probing must not suffer), next to the same figures with no API load.

With --before, each phase's figures are printed for both trees, one after the other in the same
run (a shared machine's load changes by the minute: compare within a run, not across runs).

Loopback only; every phase is bounded (--duration seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from inspect import signature
from pathlib import Path
from typing import Any

from aiohttp import web

from ispmon.api.app import create_app, start_api
from ispmon.config import Settings
from ispmon.daemon import freeze_long_lived
from ispmon.logging import configure_logging
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from throughput import OURS, THEIRS, Rig, cpu_seconds, make_endpoints, pin, pin_postgres, targets

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
ROUTES = {
    "list": ("GET /services/?limit=50", "/services/?limit=50"),
    "livez": ("GET /livez", "/livez"),
    "status": ("GET /services/{id}/status", "/services/api-tcp-7/status"),
}


def wrk_figures(out: str) -> dict[str, float]:
    """requests/s, p50 and p99 in ms, and socket errors from wrk's --latency output."""

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "requests": int(total.group(1)) if total else 0,
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
    }


async def run_wrk(url: str, clients: int, duration: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    pin(proc.pid, THEIRS)
    out, _ = await proc.communicate()
    return out.decode()


async def settle(server: web.Server) -> None:
    """Until the API holds no connection: requests wrk left in flight are still being served after
    it exits (aiohttp keeps a handler running after its client left, until it finishes), and would
    otherwise load the next phase."""
    for _ in range(1200):
        if not server.connections:
            return
        await asyncio.sleep(0.1)


async def phase(
    rig: Rig, server: web.Server, base: str, path: str | None, clients: int, duration: float
) -> dict[str, Any]:
    """One load phase; CPU, checks and requests served are counted until the API is idle again
    (see `settle`): with 2,000 clients most requests are still in flight when wrk stops."""
    stats = rig.monitor.scheduler.stats
    served0 = server.requests_count
    rig.monitor.scheduler.reset_lag()
    skipped0 = stats.skipped_late + stats.skipped_overrun
    c0, cpu0, t0 = stats.completed, cpu_seconds(), time.monotonic()
    out = await run_wrk(base + path, clients, duration) if path else await asyncio.sleep(duration)
    p50, p99 = rig.monitor.scheduler.lag_percentiles(0.5, 0.99)
    if path:
        await settle(server)
    c1, cpu1, t1 = stats.completed, cpu_seconds(), time.monotonic()
    served = server.requests_count - served0  # settle's own /livez requests are a handful
    figures = wrk_figures(out) if path else {}
    if os.environ.get("BENCH_DEBUG") and out:
        print(out)
    return {
        **figures,
        "served": served,
        "cpu_s": cpu1 - cpu0,
        "seconds": t1 - t0,
        "cpu": (cpu1 - cpu0) / (t1 - t0),
        "checks": (c1 - c0) / (t1 - t0),
        "lag_p50": p50 * 1000,
        "lag_p99": p99 * 1000,
        "skipped": stats.skipped_late + stats.skipped_overrun - skipped0,
    }


def api_cpu_us(r: dict[str, Any], baseline: dict[str, Any]) -> float:
    """The API's own CPU per request served: the phase's, less what the checks done meanwhile cost
    at baseline (on a shared machine the process gets less CPU under load, so a share of the time
    would not do)."""
    if baseline["checks"]:
        per_check = baseline["cpu_s"] / (baseline["checks"] * baseline["seconds"])
        monitor = per_check * r["checks"] * r["seconds"]
    else:  # --api-only: what the idle process uses
        monitor = baseline["cpu"] * r["seconds"]
    return (r["cpu_s"] - monitor) / r["served"] * 1e6 if r["served"] else float("nan")


def line(label: str, r: dict[str, Any], baseline: dict[str, Any]) -> str:
    if "rps" in r:
        api_us = api_cpu_us(r, baseline)
        load = (
            f"{r['rps']:6.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
            f"{api_us:5.0f} µs CPU/req  errors {r['errors']:<3}"
        )
    else:
        load = f"{'(no API load)':>67}"
    return (
        f"{label:30} {load}  CPU {r['cpu'] * 100:3.0f}%  checks {r['checks']:5.0f}/s  "
        f"lag p50 {r['lag_p50']:6.2f} ms p99 {r['lag_p99']:6.2f} ms  skipped {r['skipped']}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--clients", default="100,2000", help="concurrent connections to try")
    parser.add_argument("--profile", action="store_true", help="cProfile the list route under 100 clients")
    parser.add_argument(
        "--api-only",
        action="store_true",
        help="no checks run (endpoints loaded, scheduler stopped): CPU per request is the API's alone",
    )
    parser.add_argument(
        "--checks",
        type=int,
        default=1000,
        help="checks/s the monitor runs (endpoints, half HTTP and half TCP, every 1 s; at least 100); "
        "lower it when the machine is shared and the baseline is already late",
    )
    parser.add_argument("--routes", default="list,livez,status", help="which of list, livez, status to load")
    parser.add_argument(
        "--reps",
        type=int,
        default=1,
        help="with --before: runs of each tree, alternated; medians are printed",
    )
    parser.add_argument("--json", help=argparse.SUPPRESS)  # where a --before run's child writes its figures
    parser.add_argument(
        "--before",
        metavar="TREE",
        help="first run the phases on TREE/src (e.g. `git archive main` unpacked), then on this tree",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/api.py needs wrk: apt-get install wrk")
    if args.before:
        compare(args)
        return
    configure_logging("error", "console")
    # 2,000 clients and 1,000 checks in flight need more than a shell's 1,024 descriptors.
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    pin(0, OURS)
    workdir = Path(tempfile.mkdtemp(prefix="ispmon-bench-api-"))
    dsn = os.environ.get("DATABASE_URL")
    embedded = None
    if not dsn:
        embedded = EmbeddedPostgres(workdir)
        dsn = await asyncio.to_thread(embedded.start)
        pin_postgres(embedded.pgdata, THEIRS)
    db = await Database.connect(dsn, max_size=10)  # the daemon's pool size
    rig = Rig(db, 500)
    per_kind = args.checks // 2
    runner = None
    try:
        with targets(workdir) as ports:
            specs = [s for kind in ("http", "tcp") for s in make_endpoints(kind, per_kind, 1.0, ports, "api")]
            await db.endpoints.sync_config(specs)
            if not args.api_only:
                await rig.start()
            for spec in specs:
                rig.monitor.upsert(spec)
            freeze_long_lived()
            settings = Settings()
            app = create_app(AppServices.build(db, settings, rig.monitor))
            # The cap above the clients tried (an older start_api, for a before/after run, has none).
            bounds = (
                {"max_connections": 10_000} if "max_connections" in signature(start_api).parameters else {}
            )
            runner, host, port = await start_api(app, "127.0.0.1", 0, None, **bounds)
            server = runner.server
            assert server is not None
            base = f"http://{host}:{port}"
            await asyncio.sleep(3.0)  # warm: every endpoint checked at least twice
            print(
                f"python {sys.version.split()[0]}, loop {type(asyncio.get_running_loop()).__module__}, "
                f"ispmon on CPU {sorted(OURS)}, wrk+targets+PostgreSQL on CPU {sorted(THEIRS)}; "
                f"{len(specs)} endpoints{' (not checked)' if args.api_only else ' checked every 1 s'}; "
                f"{args.duration:g} s per phase; "
                f"load average {os.getloadavg()[0]:.1f} (a shared machine inflates latencies, not CPU/req)"
            )
            results: list[dict[str, Any]] = []
            baseline = await phase(rig, server, base, None, 0, args.duration)
            print(line("baseline", baseline, baseline), flush=True)
            results.append({"label": "baseline", **baseline, "api_us": float("nan")})
            routes = [
                (label, path) for name, (label, path) in ROUTES.items() if name in args.routes.split(",")
            ]
            for label, path in routes:
                for clients in (int(c) for c in args.clients.split(",")):
                    r = await phase(rig, server, base, path, clients, args.duration)
                    print(line(f"{label} x{clients}", r, baseline), flush=True)
                    results.append({"label": f"{label} x{clients}", **r, "api_us": api_cpu_us(r, baseline)})
            if args.json:
                await asyncio.to_thread(Path(args.json).write_text, json.dumps(results))
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                r = await phase(rig, server, base, "/services/?limit=50", 100, args.duration)
                profiler.disable()
                print(line("profiled GET /services/?limit=50 x100", r, baseline))
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(35)
                print(text.getvalue())
    finally:
        if runner is not None:
            await runner.cleanup()
        await rig.stop()
        await db.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def compare(args: argparse.Namespace) -> None:
    """Run this script on `args.before`'s src/ and on this tree's, alternately `args.reps` times
    each, and print the medians of both side by side."""
    here = Path(__file__).resolve().parent
    passed = [f"--duration={args.duration:g}", f"--clients={args.clients}", f"--checks={args.checks}"]
    passed += [f"--routes={args.routes}"] + (["--api-only"] if args.api_only else [])
    runs: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
    for rep in range(args.reps):
        for tag, src in (("before", Path(args.before) / "src"), ("after", here.parent / "src")):
            out = Path(tempfile.mkstemp(prefix=f"ispmon-bench-api-{tag}-", suffix=".json")[1])
            print(f"== {tag} ({rep + 1} of {args.reps}): {src}", flush=True)
            env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{here}"}
            subprocess.run([sys.executable, __file__, *passed, "--json", str(out)], env=env, check=True)
            runs[tag].append(json.loads(out.read_text()))
            out.unlink()

    def med(tag: str, i: int, key: str) -> float:
        values = [run[i].get(key, 0) for run in runs[tag]]
        return float(statistics.median(values)) if values else float("nan")

    print(f"\nmedians of {args.reps} run(s) of each tree, alternated")
    print(
        f"{'phase':32} {'req/s before':>12} {'after':>7} {'ratio':>6}  {'CPU µs/req before':>17} {'after':>6}  "
        f"{'checks/s before':>15} {'after':>6}  {'lag p50/p99 ms before':>22} {'after':>14}  "
        f"{'non-2xx before':>14} {'after':>6}"
    )
    for i, phase_figures in enumerate(runs["before"][0]):
        b = {k: med("before", i, k) for k in ("rps", "api_us", "checks", "lag_p50", "lag_p99", "errors")}
        a = {k: med("after", i, k) for k in b}
        ratio = a["rps"] / b["rps"] if b["rps"] else float("nan")
        print(
            f"{phase_figures['label']:32} {b['rps']:12.0f} {a['rps']:7.0f} {ratio:6.2f}  "
            f"{b['api_us']:17.0f} {a['api_us']:6.0f}  {b['checks']:15.0f} {a['checks']:6.0f}  "
            f"{b['lag_p50']:12.1f} /{b['lag_p99']:7.1f}  {a['lag_p50']:6.1f} /{a['lag_p99']:6.1f}  "
            f"{b['errors']:14.0f} {a['errors']:6.0f}"
        )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
