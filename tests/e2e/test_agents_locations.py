"""Outages confirmed from several locations, on real network paths: three locations made of
network namespaces, one agent each (a real process inside its namespace), each with its own route
to a target in a fourth namespace. With `confirm_locations = 2`, cutting one location's route opens
no outage; cutting a second opens exactly one, naming both locations; a location whose agent is
dead counts as neither up nor down, and says so.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.parallel import unique_name

from .test_daemon import Daemon, free_port, poll

pytestmark = pytest.mark.timeout(300)

TARGET = "10.77.100.1"
LOCATIONS = ("fra1", "ams1", "lon1")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def network() -> Iterator[dict[str, str]]:
    """location -> its namespace; the target namespace under key "target"."""
    names = {loc: unique_name(f"l{loc}") for loc in LOCATIONS}
    target = unique_name("ltgt")
    made: list[str] = []
    try:
        sh("ip", "netns", "add", target)
        made.append(target)
        sh("ip", "-n", target, "link", "set", "lo", "up")
        sh("ip", "-n", target, "addr", "add", f"{TARGET}/32", "dev", "lo")
        for i, ns in enumerate(names.values(), start=1):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            a, b = unique_name("va"), unique_name("vb")
            sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", target)
            sh("ip", "-n", ns, "addr", "add", f"10.77.{i}.2/24", "dev", a)
            sh("ip", "-n", target, "addr", "add", f"10.77.{i}.1/24", "dev", b)
            sh("ip", "-n", ns, "link", "set", a, "up")
            sh("ip", "-n", target, "link", "set", b, "up")
            sh("ip", "-n", ns, "route", "add", f"{TARGET}/32", "via", f"10.77.{i}.1")
        yield {**names, "target": target}
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def cut(ns: str) -> None:
    sh("ip", "-n", ns, "route", "del", f"{TARGET}/32")


def curl_json(ns: str, url: str) -> Any:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "5", url], capture_output=True, check=True
    )
    return json.loads(out.stdout)


async def test_an_outage_needs_two_locations_and_names_them(
    tmp_path: Path, db_dsn: str, network: dict[str, str], notify_socket: tuple[Path, socket.socket]
) -> None:
    if "host=" not in db_dsn and "@/" not in db_dsn:
        pytest.fail("this test needs a unix-socket DATABASE_URL (reachable from inside a namespace)")
    notify_path, _ = notify_socket
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f"""
[[endpoints]]
id = "core"
name = "Core router"
protocol = "icmp"
url = "{TARGET}"
check_interval = 2
timeout = 0.5
packet_count = 1
locations = ["fra1", "ams1", "lon1"]
confirm_locations = 2
"""
    )
    daemons: dict[str, Daemon] = {}
    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
    port = free_port()
    try:
        for loc in LOCATIONS:
            state = tmp_path / loc
            state.mkdir()
            d = Daemon(
                state,
                port,  # each in a namespace of its own: the same port on each one's loopback
                notify_path,
                {
                    "DATABASE_URL": db_dsn,
                    "ISPMON_CONFIG": str(config),
                    "ISPMON_AGENT_ID": f"agent-{loc}",
                    "ISPMON_LOCATION": loc,
                    "AGENT_DEAD_AFTER": "5",
                    "OUTAGE_DETECTION_THRESHOLD": "2",
                    "OUTAGE_VERIFICATION_CHECKS": "1",
                    "OUTAGE_RECOVERY_THRESHOLD": "1",
                    "SERVICE_CHECK_RETRIES": "0",
                    "ISPMON_SYSTEM_METRICS_INTERVAL": "0",
                },
            )
            d.prefix = ["ip", "netns", "exec", network[loc]]
            d.start()
            daemons[loc] = d
            await poll(
                lambda loc=loc: pool.fetchval(
                    "SELECT count(*) FROM status_history WHERE location = $1 AND status = 'up'", loc
                ),
                lambda n: n >= 1,
                90,
                f"an UP check from {loc}",
            )

        cut(network["fra1"])
        await poll(
            lambda: pool.fetchval(
                "SELECT status FROM endpoint_locations WHERE endpoint_id = 'core' AND location = 'fra1'"
            ),
            lambda s: s == "down",
            60,
            "fra1's verdict DOWN",
        )
        # Several more intervals with one location down: still no outage.
        await poll(
            lambda: pool.fetchval(
                "SELECT count(*) FROM status_history WHERE location = 'fra1' AND status = 'down'"
            ),
            lambda n: n >= 6,
            60,
            "fra1 checking DOWN for a while",
        )
        assert await pool.fetchval("SELECT count(*) FROM outages") == 0
        status = curl_json(network["lon1"], f"http://127.0.0.1:{port}/services/core/status")
        by_loc = {x["location"]: x for x in status["locations"]}
        assert by_loc["fra1"]["status"] == "down" and by_loc["lon1"]["status"] == "up", status["locations"]

        cut(network["ams1"])
        outages = await poll(
            lambda: pool.fetch("SELECT * FROM outages WHERE endpoint_id = 'core'"),
            lambda rows: len(rows) >= 1,
            60,
            "the confirmed outage",
        )
        assert len(outages) == 1
        seen = {x["location"] for x in json.loads(outages[0]["locations"])}
        assert seen == {"fra1", "ams1"}, outages[0]["locations"]
        # More intervals: still one outage, not one per location.
        await poll(
            lambda: pool.fetchval(
                "SELECT count(*) FROM status_history WHERE location = 'ams1' AND status = 'down'"
            ),
            lambda n: n >= 6,
            60,
            "ams1 checking DOWN for a while",
        )
        assert await pool.fetchval("SELECT count(*) FROM outages") == 1

        # lon1's agent dies: its location counts as neither up nor down, and says so.
        daemons["lon1"].kill9()
        status = await poll(
            lambda: _status(network["fra1"], port),
            lambda s: any(x["location"] == "lon1" and not x["live"] for x in s["locations"]),
            60,
            "lon1 reported without a live agent",
        )
        lon1 = next(x for x in status["locations"] if x["location"] == "lon1")
        assert lon1["status"] == "unknown" and "no live agent" in lon1["reason"]
        assert status["open_outage"] is not None

        # The routes come back: the one outage is resolved.
        for loc in ("fra1", "ams1"):
            i = LOCATIONS.index(loc) + 1
            sh("ip", "-n", network[loc], "route", "add", f"{TARGET}/32", "via", f"10.77.{i}.1")
        await poll(
            lambda: pool.fetchval("SELECT count(*) FROM outages WHERE resolved_at IS NULL"),
            lambda n: n == 0,
            60,
            "the outage resolved",
        )
        assert await pool.fetchval("SELECT count(*) FROM outages") == 1
        for loc in ("fra1", "ams1"):
            assert daemons[loc].terminate() == 0
    finally:
        for d in daemons.values():
            d.cleanup()
        await pool.close()


async def _status(ns: str, port: int) -> Any:
    return curl_json(ns, f"http://127.0.0.1:{port}/services/core/status")
