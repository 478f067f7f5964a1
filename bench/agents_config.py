"""Configuration across agents: from a change through one agent's API to every other agent applying it.

    python bench/agents_config.py                                # 3 agents, 50 changes, 300 endpoints
    python bench/agents_config.py --agents 3 --changes 100 --endpoints 2000

`--agents` `ispmon run` processes share one PostgreSQL (the embedded server in a temporary
directory, or a fresh database on DATABASE_URL's server), sharing `--endpoints` TCP endpoints at
60 s against a local listener (each checked by its owner), so the agents are busy as in service.
Changes go through the agents' APIs in turn, one at a time, cycling through: create an endpoint,
change it, create a maintenance window, delete the endpoint. Each is
timed from just before the request to the `config_applied` log line (its timestamp and `last_id`)
of the last other agent to apply it; beside it, the API's own answer time (what the change costs
where it is made: the anchor). Printed: median, 90th percentile and max, against the 2 s goal.
First, what the triggers that record the changes cost a writer: a config-file sync of
`--sync-endpoints` endpoints (unchanged, then all changed) with the triggers on beside off.
Loopback only; the agents' logs are left in the printed directory only when something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from ispmon.availability.endpoints import build_endpoint
from ispmon.store.database import Database

GOAL_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Agent:
    def __init__(self, agent_id: str, dsn: str, state: Path) -> None:
        self.id = agent_id
        self.port = free_port()
        self.log_path = state / f"{agent_id}.log"
        state.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("ISPMON_CONFIG", "NOTIFY_SOCKET")}
        env.update(
            DATABASE_URL=dsn,
            ISPMON_AGENT_ID=agent_id,
            ISPMON_STATE_DIR=str(state),
            API_PORT=str(self.port),
            ISPMON_LOG_FORMAT="json",
            RADIUS_ACCT_PORT="0",
            FLOW_PORT="0",
        )
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ispmon", "run"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._offset = 0
        self._buffer = b""
        self.applied: list[tuple[int, float]] = []  # (last_id, Unix time of the log line)
        self.listening = False

    def read_log(self) -> None:
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for raw in lines:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == "config_listener_connected":
                self.listening = True
            elif line.get("event") == "config_applied":
                at = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
                self.applied.append((int(line["last_id"]), at))

    def applied_at(self, change_id: int) -> float | None:
        return next((at for last, at in self.applied if last >= change_id), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


async def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


async def serve_tcp() -> tuple[asyncio.Server, int]:
    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def change_request(i: int, port: int) -> tuple[str, str, dict[str, Any] | None]:
    """The i-th change: (method, path, body), cycling create / change / window / delete."""
    n, step = divmod(i, 4)
    ep = f"bench-change-{n}"
    if step == 0:
        body = {"id": ep, "name": ep, "url": f"tcp://127.0.0.1:{port}", "check_interval": 60, "timeout": 2}
        return "POST", "/services/", body
    if step == 1:
        return "PUT", f"/services/{ep}", {"check_interval": 30}
    if step == 2:
        window = {
            "id": f"bench-window-{n}",
            "name": "bench",
            "starts_at": "2099-01-01T00:00:00Z",
            "ends_at": "2099-01-02T00:00:00Z",
            "endpoint_ids": [ep],
        }
        return "POST", "/maintenance/", window
    return "DELETE", f"/services/{ep}", None


async def trigger_cost(db: Database, count: int, reps: int = 3) -> None:
    """What the configuration triggers cost a writer: a config-file sync of `count` endpoints,
    unchanged and all changed, with the triggers on and off in turn (same run, same database)."""
    specs = [
        build_endpoint(
            {"id": f"sync-{i}", "name": f"s {i}", "url": "tcp://127.0.0.1:9", "check_interval": 60}
        )
        for i in range(count)
    ]
    await db.endpoints.sync_config(specs)
    times: dict[tuple[str, bool], list[float]] = {}
    for rep in range(reps):
        for on in (True, False):
            await db.pool.execute(f"ALTER TABLE endpoints {'ENABLE' if on else 'DISABLE'} TRIGGER USER")
            started = time.perf_counter()
            await db.endpoints.sync_config(specs)
            times.setdefault(("unchanged", on), []).append(time.perf_counter() - started)
            changed = [
                build_endpoint({**s.stored_dict(), "name": f"s {i} {rep} {on}"}) for i, s in enumerate(specs)
            ]
            started = time.perf_counter()
            await db.endpoints.sync_config(changed)
            times.setdefault(("changed", on), []).append(time.perf_counter() - started)
    await db.pool.execute("ALTER TABLE endpoints ENABLE TRIGGER USER")
    await db.pool.execute("DELETE FROM endpoints WHERE id LIKE 'sync-%'")
    print(f"config-file sync of {count} endpoints, median of {reps}:  triggers on   off    on/off")
    for what in ("unchanged", "changed"):
        on, off = statistics.median(times[(what, True)]), statistics.median(times[(what, False)])
        print(f"  {what:47} {on:7.3f} {off:7.3f} s  {on / off:5.2f}")


async def run(args: argparse.Namespace, dsn: str, state: Path) -> bool:
    server, port = await serve_tcp()
    db = await Database.connect(dsn)  # applies the schema before the agents start
    if args.sync_endpoints:
        await trigger_cost(db, args.sync_endpoints)
        await db.pool.execute("DELETE FROM config_changes")
    for i in range(args.endpoints):
        await db.endpoints.insert(
            build_endpoint(
                {
                    "id": f"bench-{i}",
                    "name": f"bench {i}",
                    "url": f"tcp://127.0.0.1:{port}",
                    "check_interval": 60,
                }
            )
        )
    agents = [Agent(f"agent-{k}", dsn, state / f"agent-{k}") for k in range(args.agents)]
    ok = True
    try:
        for agent in agents:
            await wait(lambda a=agent: (a.read_log(), a.listening)[1], 120, f"{agent.id} listening")
        end_to_end: list[float] = []
        answers: list[float] = []
        async with aiohttp.ClientSession() as http:
            for i in range(args.changes):
                origin = agents[i % len(agents)]
                others = [a for a in agents if a is not origin]
                method, path, body = change_request(i, port)
                started = time.time()
                async with http.request(method, f"http://127.0.0.1:{origin.port}{path}", json=body) as resp:
                    if resp.status >= 300:
                        raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                answers.append(time.time() - started)
                change_id = await db.pool.fetchval(
                    "SELECT max(id) FROM config_changes WHERE origin = $1", origin.id
                )

                def applied(others: list[Agent] = others, change_id: int = change_id) -> bool:
                    for agent in others:
                        agent.read_log()
                    return all(agent.applied_at(change_id) is not None for agent in others)

                try:
                    await wait(applied, 60, f"change {change_id} on every agent")
                except TimeoutError:
                    ok = False
                    print(f"change {i} ({method} {path}) not applied everywhere within 60 s")
                    continue
                end_to_end.append(max(a.applied_at(change_id) or 0.0 for a in others) - started)
                await asyncio.sleep(args.pause)
        load = os.getloadavg()[0]
        print(
            f"{args.agents} agents, {args.endpoints} endpoints at 60 s, {len(end_to_end)} of {args.changes} "
            f"changes, load {load:.1f} on {os.cpu_count()} cores"
        )
        print("                                    median     p90     max")
        for name, values in (
            ("API answer on the agent changed", answers),
            ("every other agent applied", end_to_end),
        ):
            if values:
                q = sorted(values)
                p90 = q[min(len(q) - 1, int(0.9 * len(q)))]
                print(f"  {name:32} {statistics.median(q):7.3f} {p90:7.3f} {q[-1]:7.3f}  s")
        if end_to_end:
            worst = max(end_to_end)
            verdict = "met" if worst < GOAL_S else "NOT met"
            print(
                f"  goal: every agent within {GOAL_S:.0f} s: {verdict} "
                f"(max {worst:.3f} s, {worst / GOAL_S:.2f} of the goal)"
            )
        return ok and bool(end_to_end) and max(end_to_end) < GOAL_S
    finally:
        for agent in agents:
            agent.stop()
        await db.close()
        server.close()


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ispmon-bench-agents-"))
    embedded = None
    name = f"bench_agents_{os.getpid()}"
    ok = False
    try:
        if os.environ.get("DATABASE_URL"):
            base = os.environ["DATABASE_URL"]
        else:
            from ispmon.store.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg")
            base = await asyncio.to_thread(embedded.start)
        admin = await asyncpg.connect(with_database(base, "postgres"))
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            ok = await run(args, with_database(base, name), tmp / "agents")
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                print(f"logs kept in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--endpoints", type=int, default=300, help="endpoints the agents share, at 60 s")
    parser.add_argument(
        "--sync-endpoints", type=int, default=5000, help="endpoints of the trigger-cost figure (0: skip it)"
    )
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between changes (no coalescing)")
    sys.exit(asyncio.run(main(parser.parse_args())))
