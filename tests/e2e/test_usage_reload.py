"""SIGHUP and the usage tables: the daemon re-reads the file's ``[[customers]]`` and
``[[radius_clients]]``; a NAS added is answered at once (Debian's radclient, real packets), one
removed is refused at once, the listener keeps its socket; a file the daemon cannot apply (a bad
table, or a customer whose User-Name an API customer owns) changes nothing and is one log line.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_daemon import Daemon, free_port, wait_for_datagram
from tests.e2e.test_radius_crash import free_udp_port
from tests.integration.usage.radclient import packet, radclient

pytestmark = pytest.mark.timeout(240)

FAR = '[[radius_clients]]\nid = "bras-far"\naddress = "192.0.2.1"\nsecret = "far-secret"\n'
LOCAL_SECRET = "local-nas-secret"  # radclient sends from 127.0.0.1: it is the second NAS
LOCAL = f'[[radius_clients]]\nid = "bras-local"\naddress = "127.0.0.1"\nsecret = "{LOCAL_SECRET}"\n'
BAD_NAS = '[[radius_clients]]\nid = "bras-bad"\naddress = "not-an-address"\nsecret = "x"\n'


def customer(customer_id: str, username: str) -> str:
    return f'[[customers]]\nid = "{customer_id}"\nname = "{customer_id}"\nusernames = ["{username}"]\n'


@pytest.fixture
def notify_socket(tmp_path: Path) -> Any:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield path, sock
    sock.close()


async def test_sighup_reloads_customers_and_nas_clients_under_the_running_listener(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket]
) -> None:
    notify_path, notify = notify_socket
    udp_port = free_udp_port()
    config = tmp_path / "ispmon.toml"
    config.write_text(FAR + customer("alice", "alice"))
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    daemon = Daemon(
        tmp_path,
        api_port,
        notify_path,
        {"RADIUS_ACCT_PORT": str(udp_port), "RADIUS_ACCT_ADDRESS": "127.0.0.1", "ISPMON_CONFIG": str(config)},
    )
    serial = 0

    async def send() -> tuple[int, str]:
        """One Start for bob from 127.0.0.1 with the second NAS's secret (a new session each time)."""
        nonlocal serial
        serial += 1
        start = packet(
            **{"Acct-Status-Type": "Start", "Acct-Session-Id": f"bob-{serial}", "User-Name": "bob"}
        )
        return await radclient(udp_port, [start], LOCAL_SECRET, "-t", "1")

    async def reload(http: aiohttp.ClientSession, text: str) -> None:
        config.write_text(text)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for_datagram(notify, "READY=1", timeout=30)
        assert daemon.proc.poll() is None  # still running

    async def customers(http: aiohttp.ClientSession) -> dict[str, str]:
        async with http.get(base + "/customers/") as resp:
            assert resp.status == 200
            return {c["id"]: c["source"] for c in (await resp.json())["items"]}

    def failures() -> list[dict[str, Any]]:
        return [line for line in daemon.log_lines() if line.get("event") == "config_reload_failed"]

    daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for_datagram(notify, "READY=1", timeout=90)
            async with http.post(
                base + "/customers/", json={"id": "carol", "name": "Carol", "usernames": ["carol"]}
            ) as resp:
                assert resp.status == 201, await resp.text()
            assert await customers(http) == {"alice": "config", "carol": "api"}

            code, out = await send()  # a NAS the file does not know: dropped, unanswered
            assert code != 0 and "Accounting-Response" not in out, out

            await reload(http, FAR + LOCAL + customer("alice", "alice") + customer("bob", "bob"))
            code, out = await send()
            assert code == 0 and "Received Accounting-Response" in out, out
            async with http.get(base + "/sessions/active", params={"nas": "bras-local"}) as resp:
                sessions = (await resp.json())["items"]
            assert [(s["acct_session_id"], s["customer_id"]) for s in sessions] == [("bob-2", "bob")]
            assert await customers(http) == {"alice": "config", "bob": "config", "carol": "api"}
            async with http.get(base + "/nas/") as resp:
                assert {n["id"] for n in (await resp.json())["items"]} == {"bras-far", "bras-local"}

            # A bad table: the running configuration stays (the NAS is still answered, bob stays).
            await reload(http, FAR + BAD_NAS + customer("alice", "alice"))
            assert len(failures()) == 1 and "radius_clients[1].address" in failures()[0]["error"]
            code, out = await send()
            assert code == 0 and "Received Accounting-Response" in out, out
            assert await customers(http) == {"alice": "config", "bob": "config", "carol": "api"}

            # The database refuses the file (carol's User-Name is an API customer's): nothing
            # changes, NAS clients included, and the line names the key.
            await reload(http, FAR + customer("alice", "alice") + customer("dave", "carol"))
            assert len(failures()) == 2, failures()
            assert "customers[1].usernames[0]" in failures()[1]["error"], failures()[1]
            code, out = await send()
            assert code == 0 and "Received Accounting-Response" in out, out
            assert await customers(http) == {"alice": "config", "bob": "config", "carol": "api"}

            # The NAS removed from the file is refused from the next packet; bob goes, carol stays.
            await reload(http, FAR + customer("alice", "alice"))
            code, out = await send()
            assert code != 0 and "Accounting-Response" not in out, out
            assert await customers(http) == {"alice": "config", "carol": "api"}
            assert len(failures()) == 2
            reloaded = [line for line in daemon.log_lines() if line.get("event") == "usage_config_synced"]
            assert reloaded[-1]["radius_clients_removed"] == ["bras-local"]
            assert not any(LOCAL_SECRET in line for line in daemon.log_path.read_text().splitlines())
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
