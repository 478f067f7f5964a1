"""Scale-out: 1 agent against 3 agents on one PostgreSQL, the same endpoints at 60 s (issue 16).

    PYTHONPATH=src python3 bench/agents.py                    # 20,000 TCP endpoints, ~12 minutes
    PYTHONPATH=src python3 bench/agents.py --endpoints 3000 --interval 10 --window 20 --warmup 10

`ispmon run` processes share the embedded PostgreSQL started here in a temporary directory (or a
fresh database on DATABASE_URL's server), with `--endpoints` TCP endpoints written straight into
`endpoints` before the agents start, checked against a few TCP listeners on 127.0.0.1 (a child
process of this script). In order:

1. one agent alone: after a warm-up of one interval, its CPU (psutil, user+system) over `--window`
   seconds divided by the checks it wrote in that window (status_history rows with its agent_id);
2. two more agents join: after every endpoint has one owner again and a warm-up, the same for
   each of the three, side by side with the lone agent's figure; beside both, PostgreSQL's CPU
   (the postmaster and its children, when the server runs on this host) and the coordination
   statements per second, counted from pg_stat_user_tables on the coordination tables (rows
   written to `agents`, `agent_leases`, scans of `config_changes`);
3. a configuration change through one agent's API reaching the others: from just before the POST
   to the endpoint being in every other agent's monitor (`GET /services/{id}/status` carries the
   monitor's `phase` only then; `GET /services/{id}` reads the database and would answer 200 at
   once on every agent), when ispmon.agents.config_sync exists;
4. `kill -9` of one of the three: the time to the survivors' hand-over (their `endpoints_rebalanced`
   log lines) and to every orphaned endpoint checked again, its lateness against its grid slot,
   and double checks (two checks of one endpoint less than half an interval apart), at
   AGENT_DEAD_AFTER 30 and then (three fresh agents) at `--fast-dead-after`;
5. the heartbeat statement run `--heartbeats` times in a loop (ispmon's AgentRegistry, in this
   process): agent-side and PostgreSQL-side CPU per heartbeat, from which the coordination share
   of each figure above is computed (one heartbeat a second per agent).

The machine is shared: the load average is printed beside the figures. Loopback only; every loop
is bounded; the agents, the listeners and the embedded server are stopped at the end (the logs
are kept, and their directory printed, only when something failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from agents_rig import Rig, load
from ispmon.agents.ownership import owner


async def run(rig: Rig) -> None:
    """The steps of the docstring, in order; prints the figures as they come."""
    a = rig.args
    ids = [f"a{k}" for k in range(1, a.agents + 1)]
    # The control: one agent checking alone exactly what a1 checks among the three (the rest loaded
    # but inactive, as a1 holds the others' endpoints), so its rate per agent is theirs.
    share = {e.id for e in rig.specs(None) if owner(e.id, tuple(sorted(ids))) == ids[0]}
    await rig.setup(share if a.control else None)
    started = time.monotonic()
    settle = 90 + a.endpoints / 200  # start-up loads every endpoint (a few seconds per 10,000)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        rig.http = http
        control = None
        if a.control:
            rig.start("solo", a.dead_after)
            await rig.sharing(["solo"], settle)
            print(f"control: 1 agent, {len(share)} of the endpoints active; warm-up {a.warmup:g} s")
            await asyncio.sleep(a.warmup)
            control = await rig.window(["solo"])
            rig.agents["solo"].stop()
            await rig.activate(None)
        rig.start(ids[0], a.dead_after)
        await rig.sharing(ids[:1], settle)
        print(
            f"1 agent owns {a.endpoints} endpoints ({time.monotonic() - started:.0f} s); warm-up {a.warmup:g} s"
        )
        await asyncio.sleep(a.warmup)
        one = await rig.window(ids[:1])
        for i in ids[1:]:
            rig.start(i, a.dead_after)
        await rig.sharing(ids, settle)
        print(f"{a.agents} agents share them ({time.monotonic() - started:.0f} s); warm-up {a.warmup:g} s")
        await asyncio.sleep(a.warmup)
        many = await rig.window(ids)
        report_cpu(control, one, many, a)
        delays = await rig.config_change(ids)
        report_config(delays, a)
        fails = [await rig.failover(ids, ids[-1], a.interval, a.dead_after)]
        for i in ids:
            rig.agents[i].stop()
        if a.fast_dead_after:
            fast = [f"f{k}" for k in range(1, a.agents + 1)]
            for i in fast:
                rig.start(i, a.fast_dead_after)
            await rig.sharing(fast, settle + 30)
            await asyncio.sleep(a.warmup)
            fails.append(await rig.failover(fast, fast[-1], a.interval, a.fast_dead_after))
            for i in fast:
                rig.agents[i].stop()
        report_failover(fails, a)
    hb = await rig.heartbeat_cost()
    runs = [("control", control), ("1 agent", one), (f"{a.agents} agents", many)]
    report_coordination(hb, [(label, w) for label, w in runs if w is not None], a)
    print(f"whole run {time.monotonic() - started:.0f} s; {load()}")


def _per_check(w: dict[str, Any]) -> float:
    """All the agents' CPU over all their checks in the window, in microseconds."""
    return 1e6 * sum(f["cpu_s"] for f in w["agents"].values()) / max(w["checks"], 1)


def report_cpu(
    control: dict[str, Any] | None, one: dict[str, Any], many: dict[str, Any], a: argparse.Namespace
) -> None:
    print(f"\nCPU per check, {a.endpoints} TCP endpoints at {a.interval:g} s, windows of {a.window:g} s")
    print("  run                    agent  checks  checks/s  CPU s  us/check   PostgreSQL us/check")
    runs = [("control: a1's share", control), ("1 agent", one), (f"{a.agents} agents", many)]
    for label, w in runs:
        if w is None:
            continue
        pg = w["pg_cpu_s"]
        pg_text = f"{1e6 * pg / max(w['checks'], 1):8.1f}" if pg is not None else "     n/a"
        for k, (i, f) in enumerate(w["agents"].items()):
            rate = f["checks"] / w["seconds"]
            print(
                f"  {label if k == 0 else '':22} {i:5} {f['checks']:7d} {rate:9.1f} {f['cpu_s']:6.2f}"
                f" {f['us_per_check']:9.1f}   {pg_text if k == 0 else ''}"
            )
        print(f"  {'':22} ({w['load']})")
    shared = _per_check(many)
    if control is not None:
        anchor = _per_check(control)
        print(
            f"  {a.agents} agents against the control (the same checks/s per agent): {shared:.1f} against"
            f" {anchor:.1f} us per check, {100 * (shared / anchor - 1):+.1f} % (goal: coordination under +5 %)"
        )
    solo = _per_check(one)
    print(
        f"  {a.agents} agents against 1 agent ({a.agents} times the checks/s in one process): {shared:.1f} against"
        f" {solo:.1f} us per check, {100 * (shared / solo - 1):+.1f} % (each process's fixed cost, shared by"
        " fewer checks)"
    )
    for label, w in runs:
        if w is not None:
            coord = ", ".join(f"{t} {wr:.2f} rows/s + {sc:.2f} scans/s" for t, (wr, sc) in w["coord"].items())
            print(f"  coordination tables, {label}: {coord}")


def report_config(delays: list[float] | None, a: argparse.Namespace) -> None:
    if delays is None:
        print("\nconfiguration change to every agent: not measured (config sync not merged)")
        return
    if not delays:
        print("\nconfiguration change to every agent: no change reached every agent (see above)")
        return
    q = sorted(delays)
    verdict = "met" if q[-1] < 2 else "NOT met"
    print(
        f"\nconfiguration change to every agent ({len(q)} endpoints created through one agent's API, until in"
        f" every other agent's monitor): median {statistics.median(q):.3f} s, max {q[-1]:.3f} s;"
        f" goal under 2 s: {verdict} ({load()})"
    )


def _s(x: float | None) -> str:
    return f"{x:6.1f} s" if x is not None else "   n/a  "


def report_failover(fails: list[dict[str, Any]], a: argparse.Namespace) -> None:
    print(f"\nkill -9 of one of {a.agents} agents, interval {a.interval:g} s")
    for f in fails:
        print(
            f"  AGENT_DEAD_AFTER {f['dead_after']:g} s: {f['orphans']} orphans; hand-over (survivors rebalanced)"
            f" {_s(f['handover'])}; first orphan checked again {_s(f['first'])}, median {_s(f['median'])},"
            f" every one {_s(f['every'])} ({f['rechecked']} of {f['orphans']}; bound AGENT_DEAD_AFTER + interval"
            f" = {f['dead_after'] + a.interval:g} s); latest check {_s(f['late_max'])} after its slot, "
            f"{f['missed_slot']} orphans missed one slot; double checks {sum(f['doubles'].values())}"
            f" {f['doubles'] or ''} ({f['load']})"
        )
    print("  goal failover under 30 s: compare the hand-over; every orphan is checked at its next grid slot")


def report_coordination(
    hb: dict[str, float] | None, runs: list[tuple[str, dict[str, Any]]], a: argparse.Namespace
) -> None:
    if hb is None:
        print("\nheartbeat cost: n/a (PostgreSQL is not on this host)")
        return
    print(
        f"\nthe heartbeat statement alone ({a.heartbeats} in a loop, measured separately): agent side"
        f" {hb['client_us']:.0f} us CPU, PostgreSQL {hb['server_us']:.0f} us CPU, {hb['wall_us']:.0f} us wall"
    )
    for label, w in runs:
        per_agent = [f["checks"] / w["seconds"] for f in w["agents"].values()]
        rate = statistics.mean(per_agent)
        beats = w["coord"].get("agents", (0.0, 0.0))[0]
        agent_share = (
            100 * hb["client_us"] / (rate * statistics.mean(f["us_per_check"] for f in w["agents"].values()))
        )
        pg = w["pg_cpu_s"]
        pg_share = f"{100 * beats * hb['server_us'] / 1e6 / (pg / w['seconds']):.2f} %" if pg else "n/a"
        print(
            f"  {label}: {beats:.2f} heartbeats/s measured ({len(w['agents'])} expected); per agent, heartbeats"
            f" are {agent_share:.2f} % of its CPU ({rate:.0f} checks/s each); PostgreSQL:"
            f" {beats * hb['server_us'] / 1e3:.2f} ms CPU/s on heartbeats, {pg_share} of its CPU"
        )


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def listeners(count: int) -> None:
    """The targets (a child process): `count` TCP listeners that accept and close."""

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    servers = [await asyncio.start_server(accept, "127.0.0.1", 0, backlog=4096) for _ in range(count)]
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it


def start_listeners(count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--serve", str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ispmon-bench-agents-"))
    targets = start_listeners(args.listeners)
    embedded = admin = bench = None
    finished = False
    name = f"bench_agents_{os.getpid()}"
    try:
        assert targets.stdout is not None
        ports = json.loads(targets.stdout.readline())
        if os.environ.get("DATABASE_URL"):
            base = os.environ["DATABASE_URL"]
        else:
            from ispmon.store.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp)
            base = await asyncio.to_thread(embedded.start)
        admin = await asyncpg.connect(with_database(base, "postgres"))
        await admin.execute(f'CREATE DATABASE "{name}"')
        bench = Rig(args, with_database(base, name), tmp / "agents", ports)
        try:
            await run(bench)
        except (TimeoutError, RuntimeError) as exc:
            print(f"stopped: {exc}")
            bench.ok = False
        finished = bench.ok
        return 0 if bench.ok else 1
    finally:
        if bench is not None:
            await bench.close()
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        if targets.stdin is not None:
            targets.stdin.close()
        try:
            targets.wait(10)
        except subprocess.TimeoutExpired:
            targets.kill()
        if finished:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--interval", type=float, default=60.0, help="check_interval of every endpoint (s)")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds after each change of agents")
    parser.add_argument("--window", type=float, default=90.0, help="seconds over which CPU and checks count")
    parser.add_argument("--dead-after", type=float, default=30.0, help="AGENT_DEAD_AFTER of the main run")
    parser.add_argument("--fast-dead-after", type=float, default=5.0, help="a second failover (0: none)")
    parser.add_argument("--changes", type=int, default=10, help="configuration changes timed")
    parser.add_argument("--heartbeats", type=int, default=2000, help="heartbeats in the separate loop")
    parser.add_argument("--listeners", type=int, default=4, help="TCP listeners the endpoints spread over")
    parser.add_argument(
        "--no-control", dest="control", action="store_false", help="skip the lone agent on a1's share"
    )
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve:
        asyncio.run(listeners(parsed.serve))
        sys.exit(0)
    sys.exit(asyncio.run(main(parsed)))
