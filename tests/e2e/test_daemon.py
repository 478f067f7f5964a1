"""The daemon as a process: `ispmon run` on the embedded PostgreSQL, driven through its API and CLI.

One long scenario, as an operator lives it: start (READY=1 to systemd), add an endpoint through the
API, take the target down (outage after the threshold and verification), `kill -9` the daemon,
restart it (the outage is still open and not opened again), bring the target back (the outage
resolves with a duration), stop with SIGTERM (clean exit, embedded PostgreSQL stopped).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import pytest
from aiohttp import web

from tests.integration.api.documented import check_documented

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Target:
    """An HTTP target on a fixed port that can be taken down (connection refused) and brought back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.runner: web.AppRunner | None = None

    async def up(self) -> None:
        async def health(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/health", health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class Daemon:
    def __init__(self, state_dir: Path, api_port: int, notify_path: Path, extra_env: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.api_port = api_port
        self.notify_path = notify_path
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / f"daemon-{time.monotonic_ns()}.log"
        # Run under e.g. ["ip", "netns", "exec", NAME]: an agent in a location made of a namespace.
        self.prefix: list[str] = []

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            ISPMON_STATE_DIR=str(self.state_dir),
            API_PORT=str(self.api_port),
            NOTIFY_SOCKET=str(self.notify_path),
            ISPMON_LOG_FORMAT="json",
            # No accounting or flow listener unless a test asks for one: the defaults 0.0.0.0:1813
            # and 0.0.0.0:2055 would be shared by every daemon the suite (and other suites on the
            # machine) starts.
            **{"RADIUS_ACCT_PORT": "0", "FLOW_PORT": "0", **self.extra_env},
        )
        self.log_path = self.state_dir / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "ispmon", "run"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "(not json)", "raw": line})
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit code."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def cleanup(self) -> None:
        """After a test, passed or failed: no daemon left running, and its log file closed (an
        open one is reported as a ResourceWarning against whichever test runs next)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield path, sock
    sock.close()


async def wait_for_datagram(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            data = sock.recv(4096).decode()
        except BlockingIOError:
            await asyncio.sleep(0.05)
            continue
        seen.append(data)
        if wanted in data.split("\n"):
            return seen
    raise AssertionError(f"no {wanted!r} from the daemon within {timeout} s; got {seen}")


async def poll(fn: Callable[[], Any], until: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
            if until(last):
                return last
        except (aiohttp.ClientError, OSError) as exc:
            last = exc
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def postgres_running(pgdata: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(pgdata) in " ".join(cmdline):
            return True
    return False


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_outage_lifecycle_survives_kill_9(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], http: aiohttp.ClientSession
) -> None:
    notify_path, notify = notify_socket
    api_port = free_port()
    target = Target(free_port())
    await target.up()
    daemon = Daemon(
        tmp_path,
        api_port,
        notify_path,
        {"OUTAGE_DETECTION_THRESHOLD": "2", "OUTAGE_VERIFICATION_CHECKS": "1", "SERVICE_CHECK_RETRIES": "0"},
    )
    base = f"http://127.0.0.1:{api_port}"

    async def get(path: str) -> Any:
        async with http.get(base + path) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()

    daemon.start()
    try:
        # READY=1 arrives only once the API listens (first start includes initdb).
        await wait_for_datagram(notify, "READY=1", timeout=90)
        assert (await get("/livez")) is not None
        # The embedded server's URL: logged at start and printed by `ispmon db-url`, usable as is.
        env = {"ISPMON_STATE_DIR": str(tmp_path)}
        db_url = await asyncio.to_thread(run_cli, "db-url", env=env)
        assert db_url.returncode == 0, db_url.stderr
        url = db_url.stdout.strip()
        (connected,) = [line for line in daemon.log_lines() if line.get("event") == "database_connected"]
        assert connected["url"] == url and connected["database"] == "embedded"
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT max(version) FROM schema_version") >= 1
        finally:
            await conn.close()
        async with http.post(
            base + "/services/",
            json={
                "id": "web",
                "name": "Web front end",
                "url": f"http://127.0.0.1:{target.port}/health",
                "check_interval": 1,
                "timeout": 0.5,
                "criticality": "high",
            },
        ) as resp:
            assert resp.status == 201, await resp.text()

        await poll(lambda: get("/services/web/status"), lambda s: s["status"] == "up", 15, "web to be up")

        # Down: connection refused. Threshold 2 + 1 verification re-check -> an outage.
        await target.down()
        outages = await poll(lambda: get("/outages/active"), lambda o: o["count"] == 1, 20, "an outage")
        outage = outages["items"][0]
        assert outage["endpoint_id"] == "web"
        assert outage["severity"] == "major"  # DOWN on a high-criticality endpoint
        assert outage["error_kind"] == "refused"
        assert outage["verified"] is True
        status = await get("/services/web/status")
        assert status["status"] == "down" and status["open_outage"]["id"] == outage["id"]
        # The daemon's answer carries the monitor's view (phase, counters, the last check's details).
        assert status["phase"] == "outage" and status["last_check"]["attempts"] >= 1
        check_documented(await get("/openapi.json"), "GET", "/services/{endpoint_id}/status", 200, status)

        # kill -9, restart: the same outage stays open and is not opened again.
        daemon.kill9()
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        await asyncio.sleep(4)  # several more failing checks
        all_outages = (await get("/outages/?service=web"))["items"]
        assert [o["id"] for o in all_outages] == [outage["id"]]
        assert all_outages[0]["active"] is True

        # Back up: resolves after 2 consecutive successes, with its duration.
        await target.up()
        resolved = await poll(
            lambda: get(f"/outages/{outage['id']}"), lambda o: o["resolved_at"] is not None, 20, "resolution"
        )
        assert resolved["resolution"] == "auto"
        assert resolved["duration_seconds"] >= 4
        assert (await get("/outages/active"))["items"] == []
        # Events reach the database through the batched writer (flushed within a second).
        detail = await poll(
            lambda: get(f"/outages/{outage['id']}"),
            lambda o: [e["kind"] for e in o["events"]][-1:] == ["outage_resolved"],
            10,
            "the resolution event",
        )
        kinds = [e["kind"] for e in detail["events"]]
        assert kinds.count("outage_declared") == 1 and kinds.count("outage_resolved") == 1, kinds

        # The monitor's own figures are in /readyz.
        ready = await get("/readyz")
        assert ready["status"] == "ready" and ready["monitor"]["endpoints"] == 1
        assert ready["monitor"]["scheduler"]["completed"] >= 5
        assert ready["monitor"]["scheduler"]["lag_p99_ms"] < 1000
        assert ready["monitor"]["writer"]["written"] >= 1 and ready["monitor"]["writer"]["dropped"] == 0
        assert ready["checks"]["probe_resources"] == "ok" and ready["monitor"]["resources"]["failures"] == 0

        # One INFO line per state change, not per check.
        lines = daemon.log_lines()
        assert all(line.get("event") != "(not json)" for line in lines), [
            line for line in lines if line.get("event") == "(not json)"
        ][:3]
        (listening, *_) = [line for line in lines if line.get("event") == "api_listening"]
        assert listening["auth"] == "none" and listening["access"].startswith("loopback only")
        changes = [line for line in lines if line.get("event") == "status_changed"]
        assert 1 <= len(changes) <= 3, changes
        history = await get("/services/web/history?limit=1000")
        assert history["count"] > len(changes) + 3

        assert daemon.terminate() == 0
        assert not postgres_running(tmp_path / "postgres"), "embedded PostgreSQL left running after SIGTERM"
        stopped = await asyncio.to_thread(run_cli, "db-url", env=env)
        assert stopped.returncode == 1 and stopped.stdout == "" and "is not running" in stopped.stderr
    finally:
        daemon.cleanup()
        await target.down()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ISPMON_CONFIG")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ispmon", *args], capture_output=True, text=True, timeout=60, env=full_env
    )


async def test_cli_check_exit_codes_follow_status(tmp_path: Path) -> None:
    target = Target(free_port())
    await target.up()
    try:
        up = await asyncio.to_thread(run_cli, "check", f"http://127.0.0.1:{target.port}/health", "--json")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["status"] == "up"
    finally:
        await target.down()
    down = await asyncio.to_thread(
        run_cli, "check", f"tcp://127.0.0.1:{target.port}", "--timeout", "0.5", "--retries", "0"
    )
    assert down.returncode == 2
    assert down.stdout.startswith("DOWN") and "[refused]" in down.stdout


def test_cli_version_and_config_errors(tmp_path: Path) -> None:
    version = run_cli("version")
    assert version.returncode == 0 and version.stdout.startswith("ispmon ")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[endpoints]]\nname = "x"\nurl = "http://127.0.0.1/"\ncheck_interval = 0.5\n')
    result = run_cli("run", "--config", str(bad), env={"ISPMON_STATE_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "endpoints[0].check_interval" in result.stderr
    env_bad = run_cli("migrate", env={"SERVICE_CHECK_INTERVAL": "soon", "ISPMON_STATE_DIR": str(tmp_path)})
    assert env_bad.returncode == 2 and "SERVICE_CHECK_INTERVAL" in env_bad.stderr


async def test_cli_check_by_endpoint_id_from_the_config_file(tmp_path: Path) -> None:
    target = Target(free_port())
    await target.up()
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f'[[endpoints]]\nid = "web"\nname = "Web"\nurl = "http://127.0.0.1:{target.port}/health"\n'
        f'expected_response_pattern = "^ok$"\n'
        f'[[endpoints]]\nid = "gone"\nname = "Gone"\nurl = "127.0.0.1:{free_port()}"\nprotocol = "tcp"\n'
        "timeout = 0.5\nretries = 0\n"
    )
    env = {"ISPMON_STATE_DIR": str(tmp_path / "state")}
    try:
        up = await asyncio.to_thread(run_cli, "check", "web", "--config", str(config), "--json", env=env)
        assert up.returncode == 0, up.stderr
        result = json.loads(up.stdout)
        assert result["endpoint_id"] == "web" and result["status"] == "up"
        down = await asyncio.to_thread(run_cli, "check", "gone", "--config", str(config), env=env)
        assert down.returncode == 2 and "[refused]" in down.stdout
        unknown = await asyncio.to_thread(run_cli, "check", "nosuch", "--config", str(config), env=env)
        # Nagios: 2 is CRITICAL; a check that cannot even start is UNKNOWN (3), said on stdout.
        assert unknown.returncode == 3 and unknown.stdout.startswith("UNKNOWN")
        assert "no endpoint with that id" in unknown.stdout
        # A lookup by id creates no database where none exists.
        assert not (tmp_path / "state" / "postgres").exists()
    finally:
        await target.down()


async def test_sighup_reloads_the_config_file_and_survives_a_bad_one(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], http: aiohttp.ClientSession
) -> None:
    notify_path, notify = notify_socket
    target = Target(free_port())
    await target.up()
    config = tmp_path / "ispmon.toml"

    def endpoint(endpoint_id: str) -> str:
        return (
            f'[[endpoints]]\nid = "{endpoint_id}"\nname = "{endpoint_id}"\n'
            f'url = "http://127.0.0.1:{target.port}/health"\ncheck_interval = 1\ntimeout = 0.5\n'
        )

    config.write_text(endpoint("first"))
    port = free_port()
    daemon = Daemon(tmp_path, port, notify_path, {"ISPMON_CONFIG": str(config)})
    base = f"http://127.0.0.1:{port}"

    async def ids() -> set[str]:
        async with http.get(base + "/services/") as resp:
            return {e["id"] for e in (await resp.json())["items"]}

    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        assert await ids() == {"first"}
        config.write_text(
            endpoint("second")
            + '[[maintenance]]\nid = "tonight"\nname = "Tonight"\nstarts_at = "2030-01-01T00:00:00Z"\n'
            'ends_at = "2030-01-01T02:00:00Z"\nall_endpoints = true\n'
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        seen = await wait_for_datagram(notify, "READY=1", timeout=20)
        assert any("RELOADING=1" in d for d in seen), seen
        await poll(ids, lambda found: found == {"second"}, 10, "the reloaded endpoints")
        async with http.get(base + "/maintenance/tonight") as resp:
            assert resp.status == 200

        config.write_text('[[endpoints]]\nname = "broken"\nurl = "http://127.0.0.1/"\ntimeout = 99\n')
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for_datagram(notify, "READY=1", timeout=20)
        await asyncio.sleep(0.5)
        assert daemon.proc.poll() is None  # still running
        assert await ids() == {"second"}  # the running configuration is kept
        failures = [line for line in daemon.log_lines() if line.get("event") == "config_reload_failed"]
        assert len(failures) == 1 and "endpoints[0].timeout" in failures[0]["error"]
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
        await target.down()


def test_api_port_in_use_is_one_clear_line_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "run",
            env={"API_PORT": str(port), "ISPMON_STATE_DIR": str(tmp_path), "RADIUS_ACCT_PORT": "0", "FLOW_PORT": "0"},
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ispmon: cannot start: API_HOST/API_PORT: cannot listen on 127.0.0.1:{port}")
    assert not postgres_running(tmp_path / "postgres"), "the embedded PostgreSQL was left running"


async def test_a_dead_embedded_postgres_makes_ispmon_exit_1_for_its_supervisor(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket]
) -> None:
    notify_path, notify = notify_socket
    daemon = Daemon(tmp_path, free_port(), notify_path, {})
    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        postmaster = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        assert await asyncio.to_thread(daemon.wait, 30) == 1
        died = [line for line in daemon.log_lines() if line.get("event") == "embedded_postgres_died"]
        assert len(died) == 1 and died[0]["log_file"].endswith("postgres/log")
        # What systemd would do next: start again, on the same data directory.
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        assert daemon.terminate() == 0
        assert not postgres_running(tmp_path / "postgres")
    finally:
        daemon.cleanup()
