"""The parts of bench/agents.py: `ispmon run` agents as processes on one database, and what is
measured on them (CPU per check over a window, coordination statements, a configuration change
reaching every agent, a kill -9 hand-over, the heartbeat statement alone). Not run as tests."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from ispmon import __version__
from ispmon.agents.ownership import owner
from ispmon.agents.registry import AgentRegistry
from ispmon.availability.endpoints import build_endpoint
from ispmon.store.database import Database
from ispmon.store.db import create_pool

COORDINATION_TABLES = ("agents", "agent_leases", "config_changes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"


class Agent:
    """One `ispmon run` process on the shared database, its JSON log in its state directory."""

    def __init__(self, agent_id: str, dsn: str, state: Path, dead_after: float) -> None:
        self.id = agent_id
        self.port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state / "daemon.log"
        env = {k: v for k, v in os.environ.items() if k not in ("ISPMON_CONFIG", "NOTIFY_SOCKET")}
        env.update(
            DATABASE_URL=dsn,
            ISPMON_AGENT_ID=agent_id,
            ISPMON_STATE_DIR=str(state),
            API_PORT=str(self.port),
            AGENT_DEAD_AFTER=str(dead_after),
            ISPMON_LOG_FORMAT="json",
            RADIUS_ACCT_PORT="0",
            FLOW_PORT="0",
        )
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ispmon", "run"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.ps = psutil.Process(self.proc.pid)
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[dict[str, Any]]:
        """The JSON lines logged since the previous call (a partial last line waits for the next)."""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        out = []
        for raw in lines:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict):
                    out.append(line)
        return out

    def log_events(self, event: str) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict) and line.get("event") == event:
                    out.append(line)
        return out

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def stamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


async def bounded(fn: Any, until: Any, timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            last = await fn()
            if until(last):
                return last
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {str(last)[:300]})")


class Rig:
    def __init__(self, args: argparse.Namespace, dsn: str, state: Path, ports: list[int]) -> None:
        self.args = args
        self.dsn = dsn
        self.state = state
        self.ports = ports
        self.agents: dict[str, Agent] = {}
        self.db: Database
        self.http: aiohttp.ClientSession
        self.postmaster: psutil.Process | None = None
        self.ok = True

    # -- set-up ------------------------------------------------------------------------------------
    def specs(self, active: set[str] | None) -> list[Any]:
        """Every endpoint; only those in `active` are active (all when None)."""
        out = []
        for i in range(self.args.endpoints):
            endpoint_id = f"bench-{i:05d}"
            out.append(
                build_endpoint(
                    {
                        "id": endpoint_id,
                        "name": f"bench {i}",
                        "url": f"tcp://127.0.0.1:{self.ports[i % len(self.ports)]}",
                        "check_interval": self.args.interval,
                        "timeout": 2,
                        "is_active": active is None or endpoint_id in active,
                    }
                )
            )
        return out

    async def setup(self, active: set[str] | None) -> None:
        self.db = await Database.connect(self.dsn, max_size=2)  # the schema, before any agent
        await self.activate(active)
        backend = await self.db.pool.fetchval("SELECT pg_backend_pid()")
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(backend).parent()
            if parent is not None and "postgres" in parent.name():
                self.postmaster = parent

    async def activate(self, active: set[str] | None) -> None:
        """Written straight into `endpoints` (no agent running: none would see the change)."""
        await self.db.endpoints.sync_config(self.specs(active))

    def pg_cpu(self) -> float | None:
        """The server's CPU so far: the postmaster, its live children, and the children it reaped."""
        if self.postmaster is None:
            return None
        t = self.postmaster.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self.postmaster.children():
            with contextlib.suppress(psutil.Error):
                total += cpu_seconds(child)
        return float(total)

    def start(self, agent_id: str, dead_after: float) -> Agent:
        agent = Agent(agent_id, self.dsn, self.state / agent_id, dead_after)
        self.agents[agent_id] = agent
        return agent

    async def listing(self, agent: Agent) -> list[dict[str, Any]]:
        async with self.http.get(f"http://127.0.0.1:{agent.port}/agents/") as resp:
            resp.raise_for_status()
            return list((await resp.json())["items"])

    async def sharing(self, ids: list[str], timeout: float) -> None:
        """Until exactly `ids` are live and their shares add up to every endpoint."""
        total = await self.db.pool.fetchval("SELECT count(*) FROM endpoints WHERE is_active")

        def done(items: list[dict[str, Any]]) -> bool:
            live = {a["id"]: a["endpoints_owned"] for a in items if a["state"] == "live"}
            return set(live) == set(ids) and all(live.values()) and sum(live.values()) == total

        await bounded(lambda: self.listing(self.agents[ids[0]]), done, timeout, f"{ids} sharing")

    # -- CPU per check -----------------------------------------------------------------------------
    async def sample(self, ids: list[str]) -> dict[str, Any]:
        cpu = {i: cpu_seconds(self.agents[i].ps) for i in ids}
        pg = self.pg_cpu()
        rows = await self.db.pool.fetch(
            """SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS written, coalesce(seq_scan, 0)
                      + coalesce(idx_scan, 0) AS scans FROM pg_stat_user_tables WHERE relname = ANY($1)""",
            list(COORDINATION_TABLES),
        )
        at = await self.db.pool.fetchval("SELECT now()")
        return {
            "cpu": cpu,
            "pg": pg,
            "tables": {r["relname"]: (r["written"], r["scans"]) for r in rows},
            "at": at,
        }

    async def window(self, ids: list[str]) -> dict[str, Any]:
        a = await self.sample(ids)
        await asyncio.sleep(self.args.window)
        b = await self.sample(ids)
        seconds = (b["at"] - a["at"]).total_seconds()
        await asyncio.sleep(3)  # the batched history writer's flush
        counts = {
            r["agent_id"]: r["n"]
            for r in await self.db.pool.fetch(
                """SELECT agent_id, count(*) AS n FROM status_history WHERE checked_at >= $1 AND checked_at < $2
                   GROUP BY agent_id""",
                a["at"],
                b["at"],
            )
        }
        coord = {
            t: (
                (b["tables"][t][0] - a["tables"][t][0]) / seconds,
                (b["tables"][t][1] - a["tables"][t][1]) / seconds,
            )
            for t in COORDINATION_TABLES
            if t in a["tables"] and t in b["tables"]
        }
        per_agent = {
            i: {
                "checks": counts.get(i, 0),
                "cpu_s": b["cpu"][i] - a["cpu"][i],
                "us_per_check": 1e6 * (b["cpu"][i] - a["cpu"][i]) / max(counts.get(i, 0), 1),
            }
            for i in ids
        }
        checks = sum(counts.values())
        pg = (b["pg"] - a["pg"]) if a["pg"] is not None and b["pg"] is not None else None
        return {
            "seconds": seconds,
            "agents": per_agent,
            "checks": checks,
            "pg_cpu_s": pg,
            "coord": coord,
            "load": load(),
        }

    # -- configuration change ----------------------------------------------------------------------
    async def config_change(self, ids: list[str]) -> list[float] | None:
        if importlib.util.find_spec("ispmon.agents.config_sync") is None:
            return None
        delays = []
        for n in range(self.args.changes):
            origin = self.agents[ids[n % len(ids)]]
            others = [self.agents[i] for i in ids if i != origin.id]
            for agent in others:
                agent.new_lines()  # only what they log from here on
            ep = f"bench-change-{n}"
            body = {"id": ep, "name": ep, "url": f"tcp://127.0.0.1:{self.ports[0]}", "check_interval": 60}
            started = time.time()
            async with self.http.post(f"http://127.0.0.1:{origin.port}/services/", json=body) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"POST /services/: {resp.status} {await resp.text()}")
            applied: dict[str, float] = {}

            async def everywhere(others: list[Agent] = others, applied: dict[str, float] = applied) -> bool:
                for agent in others:
                    for line in agent.new_lines():
                        if line.get("event") == "config_applied":
                            applied.setdefault(agent.id, stamp(line))
                return len(applied) == len(others)

            try:
                await bounded(everywhere, bool, 30, f"{ep} applied on every other agent", every=0.02)
            except TimeoutError as exc:
                print(f"  configuration change {n}: {exc}")
                self.ok = False
                continue
            delays.append(max(applied.values()) - started)
            await asyncio.sleep(0.2)
        # Applied means in the monitor: the last endpoint is among each agent's series in /metrics
        # (which lists every endpoint its monitor holds; GET /services/{id} reads the database).
        for agent in (self.agents[i] for i in ids):
            async with self.http.get(f"http://127.0.0.1:{agent.port}/metrics") as resp:
                if f'endpoint="bench-change-{self.args.changes - 1}"' not in await resp.text():
                    print(f"  {agent.id}: bench-change-{self.args.changes - 1} is not in its /metrics")
                    self.ok = False
        return delays

    # -- failover ----------------------------------------------------------------------------------
    async def failover(
        self, ids: list[str], victim: str, interval: float, dead_after: float
    ) -> dict[str, Any]:
        endpoint_ids = [r["id"] for r in await self.db.pool.fetch("SELECT id FROM endpoints WHERE is_active")]
        members = tuple(sorted(ids))
        orphans = [e for e in endpoint_ids if owner(e, members) == victim]
        self.agents[victim].kill9()
        killed = await self.db.pool.fetchval("SELECT now()")
        bound = dead_after + 2 * interval + 60

        async def rechecked() -> int:
            n: int = await self.db.pool.fetchval(
                """SELECT count(DISTINCT endpoint_id) FROM status_history
                   WHERE checked_at > $1 AND agent_id <> $2 AND endpoint_id = ANY($3::text[])""",
                killed,
                victim,
                orphans,
            )
            return n

        try:
            await bounded(
                rechecked, lambda n: n >= len(orphans), bound, "every orphan checked again", every=2
            )
        except TimeoutError as exc:
            print(f"  {exc}")
            self.ok = False
        rows = await self.db.pool.fetch(
            """SELECT endpoint_id,
                      min(checked_at) FILTER (WHERE checked_at > $1 AND agent_id <> $2) AS first_after,
                      max(checked_at) FILTER (WHERE checked_at <= $1) AS last_before
               FROM status_history
               WHERE endpoint_id = ANY($3::text[]) AND checked_at > $1::timestamptz - make_interval(secs => $4)
               GROUP BY endpoint_id""",
            killed,
            victim,
            orphans,
            2 * interval,
        )
        after = [(r["first_after"] - killed).total_seconds() for r in rows if r["first_after"] is not None]
        late = [
            (r["first_after"] - r["last_before"]).total_seconds() - interval
            for r in rows
            if r["first_after"] is not None and r["last_before"] is not None
        ]
        # Two checks of one endpoint less than half an interval apart, by which pair of agents.
        doubles = {
            f"{r['prev']}->{r['agent_id']}": r["n"]
            for r in await self.db.pool.fetch(
                """SELECT prev, agent_id, count(*) AS n FROM (
                       SELECT agent_id, lag(agent_id) OVER w AS prev, checked_at - lag(checked_at) OVER w AS gap
                       FROM status_history WHERE checked_at > $1::timestamptz - make_interval(secs => $2)
                       WINDOW w AS (PARTITION BY endpoint_id ORDER BY checked_at)) g
                   WHERE gap < make_interval(secs => $3) GROUP BY 1, 2 ORDER BY 3 DESC""",
                killed,
                interval,
                interval / 2,
            )
        }
        handover = [
            stamp(line) - killed.timestamp()
            for s in ids
            if s != victim
            for line in self.agents[s].log_events("endpoints_rebalanced")
            if stamp(line) > killed.timestamp() and line.get("gained", 0) > 0
        ]
        return {
            "dead_after": dead_after,
            "orphans": len(orphans),
            "rechecked": len(after),
            "handover": max(handover) if handover else None,
            "first": min(after) if after else None,
            "median": statistics.median(after) if after else None,
            "every": max(after) if len(after) == len(orphans) and after else None,
            "late_max": max(late) if late else None,
            "missed_slot": sum(1 for x in late if x > interval / 2),
            "doubles": doubles,
            "load": load(),
        }

    # -- the heartbeat alone -----------------------------------------------------------------------
    async def heartbeat_cost(self) -> dict[str, float] | None:
        """AgentRegistry.heartbeat run N times: this process's CPU per heartbeat (what an agent spends:
        the statement's client side and the membership recompute) and its backend's (PostgreSQL's)."""
        pool = await create_pool(self.dsn, min_size=1, max_size=1)
        try:
            registry = AgentRegistry(
                pool, agent_id="bench-heartbeat", location="bench", dead_after=30.0, version=__version__
            )
            backend = psutil.Process(await pool.fetchval("SELECT pg_backend_pid()"))
            await registry.heartbeat()
            client0, server0, wall0 = time.process_time(), cpu_seconds(backend), time.monotonic()
            for _ in range(self.args.heartbeats):
                await registry.heartbeat()
            n = self.args.heartbeats
            return {
                "client_us": 1e6 * (time.process_time() - client0) / n,
                "server_us": 1e6 * (cpu_seconds(backend) - server0) / n,
                "wall_us": 1e6 * (time.monotonic() - wall0) / n,
            }
        except psutil.Error:
            return None  # the server is not on this host
        finally:
            await pool.execute("DELETE FROM agents WHERE id = 'bench-heartbeat'")
            await pool.close()

    # -- the run -----------------------------------------------------------------------------------
    async def close(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        with contextlib.suppress(AttributeError):
            await self.db.close()
