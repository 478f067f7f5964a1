"""An idle-connection flood against the API must not starve probing of file descriptors.

The daemon runs as a process under a plain shell's kind of limit (soft 512, hard 1,024), with a
TCP check of a live local target every second. 1,100 idle connections are held against its API
(re-opened as soon as the daemon closes one) for longer than it takes to declare an outage.
Before the fix the API took every descriptor, each TCP check failed with "Too many open files"
and an outage was declared for a target that never went down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_daemon import Daemon, free_port, wait_for_datagram

pytestmark = pytest.mark.timeout(240)

FLOOD = 1100
FLOOD_SECONDS = 10.0


class LimitedDaemon(Daemon):
    """`ispmon run` with RLIMIT_NOFILE set as a login shell would (`ulimit -n`)."""

    def __init__(self, *args: object, nofile: tuple[int, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.nofile = nofile

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            ISPMON_STATE_DIR=str(self.state_dir),
            API_PORT=str(self.api_port),
            NOTIFY_SOCKET=str(self.notify_path),
            ISPMON_LOG_FORMAT="json",
            **self.extra_env,
        )
        self._log = self.log_path.open("wb")
        nofile = self.nofile
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ispmon", "run"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile),
        )


async def hold_idle(port: int, stop: asyncio.Event, opened: list[int]) -> None:
    """One idle client: connect, send nothing; when the daemon closes it, connect again."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        opened[0] += 1
        try:
            stop_wait = asyncio.ensure_future(stop.wait())
            read = asyncio.ensure_future(reader.read(1))
            await asyncio.wait({stop_wait, read}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            read.cancel()
        finally:
            writer.close()
        await asyncio.sleep(0.05)


async def test_an_idle_connection_flood_leaves_tcp_checks_up(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket]
) -> None:
    # The test's own clients need more than the daemon's limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    notify_path, notify = notify_socket
    target = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    config = tmp_path / "ispmon.toml"
    config.write_text(
        '[[endpoints]]\nid = "live"\nname = "live"\nprotocol = "tcp"\n'
        f'url = "127.0.0.1:{target_port}"\ncheck_interval = 1\ntimeout = 0.5\n'
    )
    port = free_port()
    daemon = LimitedDaemon(
        tmp_path,
        port,
        notify_path,
        # Idle connections are held as long as the cap allows: the worst case for the reserve.
        {"ISPMON_CONFIG": str(config), "API_HEADER_TIMEOUT": "120"},
        nofile=(512, 1024),
    )
    base = f"http://127.0.0.1:{port}"
    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(2)  # a first check or two
            stop = asyncio.Event()
            opened = [0]
            flood_started = time.time()
            clients = [asyncio.create_task(hold_idle(port, stop, opened)) for _ in range(FLOOD)]
            await asyncio.sleep(FLOOD_SECONDS)
            stop.set()
            await asyncio.gather(*clients)
            flood_ended = time.time()
            await asyncio.sleep(0.5)
            async with http.get(base + "/services/live/history?limit=100") as resp:
                history = (await resp.json())["items"]
            async with http.get(base + "/outages/") as resp:
                outages = (await resp.json())["items"]
        assert opened[0] >= FLOOD
        during = [h for h in history if flood_started < _epoch(h["checked_at"]) < flood_ended]
        assert len(during) >= FLOOD_SECONDS - 2, during
        assert {h["status"] for h in during} == {"up"}, [h for h in during if h["status"] != "up"][:3]
        assert outages == []
        assert daemon.proc is not None and daemon.proc.poll() is None
        lines = daemon.log_lines()
        raised = [line for line in lines if line.get("event") == "nofile_limit"]
        assert [(r["soft_at_start"], r["soft"], r["hard"]) for r in raised] == [(512, 1024, 1024)]
        capped = [line for line in lines if line.get("event") == "api_connections_capped_by_nofile_limit"]
        assert len(capped) == 1 and capped[0]["max_connections"] < 1024 - 600
        # Refusing is one line when it starts, not one per refused connection.
        assert sum(1 for line in lines if line.get("event") == "api_connections_refused") == 1
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
        target.close()
        with contextlib.suppress(Exception):
            await target.wait_closed()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
