"""Three agents as real processes on one PostgreSQL: a change through agent A's API is in effect on
B and C (their monitors, read through their own APIs) without a restart, and so is a reload of A's
config file. Each change reaches them by notification (not by the 30 s poll), and A applies none
of its own changes twice. bench/agents_config.py measures the time against the 2 s goal."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .test_daemon import Daemon, Target, free_port, http, poll

pytestmark = pytest.mark.timeout(300)

AGENTS = ("a", "b", "c")
__all__ = ["http"]  # the fixture


@pytest.fixture
def daemons(tmp_path: Path, db_dsn: str) -> Iterator[dict[str, Daemon]]:
    made: dict[str, Daemon] = {}
    sockets: list[socket.socket] = []
    for agent in AGENTS:
        state = tmp_path / agent
        state.mkdir()
        notify = state / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sockets.append(sock)
        env = {"DATABASE_URL": db_dsn, "ISPMON_AGENT_ID": agent, "AGENT_CONFIG_POLL_INTERVAL": "30"}
        if agent == "a":
            (state / "ispmon.toml").write_text("")
            env["ISPMON_CONFIG"] = str(state / "ispmon.toml")
        made[agent] = Daemon(state, free_port(), notify, env)
    yield made
    for daemon in made.values():
        daemon.cleanup()
    for sock in sockets:
        sock.close()


async def listening(daemon: Daemon) -> bool:
    return any(line.get("event") == "config_listener_connected" for line in daemon.log_lines())


async def wait_all(
    http: aiohttp.ClientSession, daemons: dict[str, Daemon], path: str, until: Any, what: str
) -> dict[str, float]:
    """Poll `path` on B and C until `until(text)`; the seconds each took."""
    started = time.monotonic()
    took: dict[str, float] = {}

    async def one(name: str) -> None:
        async def get() -> str:
            async with http.get(f"http://127.0.0.1:{daemons[name].api_port}{path}") as resp:
                return await resp.text()

        await poll(get, until, 60, f"{what} on {name}")
        took[name] = time.monotonic() - started

    await asyncio.gather(one("b"), one("c"))
    return took


def monitored(text: str) -> float | None:
    """How many endpoints the agent's monitor holds (those it checks and those others do)."""
    for line in text.splitlines():
        if line.startswith("ispmon_monitor_endpoints "):
            return float(line.split()[1])
    return None


async def wait_logged(daemons: dict[str, Daemon], kind: str, count: int, what: str) -> dict[str, float]:
    """Wait until B and C have logged `count` applies of `kind` to their memory; the seconds each took."""
    started = time.monotonic()
    took: dict[str, float] = {}
    for name in ("b", "c"):

        async def applied(n: str = name) -> int:
            lines = daemons[n].log_lines()
            return sum(1 for line in lines if line.get("event") == "config_applied" and kind in line)

        await poll(applied, lambda n: n >= count, 60, f"{what} on {name}")
        took[name] = time.monotonic() - started
    return took


async def test_changes_through_one_agent_reach_the_others(
    daemons: dict[str, Daemon], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    target = Target(free_port())
    await target.up()
    try:
        for daemon in daemons.values():
            daemon.start()
        for name, daemon in daemons.items():
            await poll(lambda d=daemon: listening(d), bool, 120, f"agent {name} listening for changes")
        a = f"http://127.0.0.1:{daemons['a'].api_port}"
        figures: dict[str, dict[str, float]] = {}

        body = {
            "id": "web",
            "name": "web",
            "url": f"http://127.0.0.1:{target.port}/health",
            "check_interval": 1,
            "timeout": 0.5,
        }
        async with http.post(f"{a}/services/", json=body) as resp:
            assert resp.status == 201, await resp.text()
        figures["create"] = await wait_all(http, daemons, "/metrics", lambda t: monitored(t) == 1, "web")
        for name in ("b", "c"):  # and its API knows it (its monitor, or the owner's checks in the history)
            async with http.get(f"http://127.0.0.1:{daemons[name].api_port}/services/web/status") as resp:
                assert (await resp.json())["endpoint_id"] == "web"

        async with http.put(
            f"{a}/services/web", json={"url": f"tcp://127.0.0.1:{target.port}", "protocol": "tcp"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        # In its monitor (the owner checks it, the others answer for it): the second apply of endpoints.
        figures["update"] = await wait_logged(daemons, "endpoints", 2, "the new definition")

        window = {
            "id": "works",
            "name": "Planned works",
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": "2099-01-01T00:00:00Z",
            "endpoint_ids": ["web"],
        }
        async with http.post(f"{a}/maintenance/", json=window) as resp:
            assert resp.status == 201, await resp.text()
        # In effect: the owner's next check of web (every second) is a maintenance check, which
        # every agent's API shows; and each agent's own calendar has it (its config_applied line).
        figures["maintenance"] = await wait_all(
            http,
            daemons,
            "/services/web/status",
            lambda t: json.loads(t).get("status") == "maintenance",
            "the window",
        )

        async with http.delete(f"{a}/services/web") as resp:
            assert resp.status == 204, await resp.text()
        figures["delete"] = await wait_all(
            http, daemons, "/metrics", lambda t: monitored(t) == 0, "web removed"
        )

        # A reload of A's file: its endpoint reaches B and C, which say that their file differs.
        (tmp_path / "a" / "ispmon.toml").write_text(
            f'[[endpoints]]\nid = "from-file"\nname = "From the file"\nurl = "tcp://127.0.0.1:{target.port}"\n'
        )
        assert daemons["a"].proc is not None
        daemons["a"].proc.send_signal(signal.SIGHUP)
        figures["reload"] = await wait_all(
            http, daemons, "/metrics", lambda t: monitored(t) == 1, "from-file"
        )
        print("seconds from A's answer to B and C in effect:", figures)

        for name in ("b", "c"):
            lines = daemons[name].log_lines()
            applied = [line for line in lines if line.get("event") == "config_applied"]
            assert applied, name
            assert {line["via"] for line in applied} == {"notification"}, applied
            assert all(line["origins"] == ["a"] for line in applied), applied
            # Each kind was applied to this agent's memory (its monitor, its maintenance calendar).
            assert {"endpoints", "maintenance"} <= {k for line in applied for k in line}, applied
            assert any(line.get("event") == "config_file_differs" for line in lines), name
        # A's own changes were applied by its API path: its listener applies none of them.
        assert not [line for line in daemons["a"].log_lines() if line.get("event") == "config_applied"]
        for daemon in daemons.values():
            assert daemon.terminate() == 0
    finally:
        await target.down()
