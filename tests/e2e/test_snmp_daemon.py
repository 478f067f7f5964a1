"""`ispmon run` polls the config file's SNMP devices: samples land in interface_metrics, a device
with a wrong community is unreachable (logged once) and the others are polled all the same."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_daemon import Daemon, free_port, poll
from tests.integration.network.agents import COMMUNITY, Agent, snmpd_namespace

pytestmark = [pytest.mark.timeout(240), pytest.mark.netns]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpd_namespace(tmp_path_factory.mktemp("snmpd"), veths=1) as found:
        yield found


async def test_daemon_polls_devices_from_the_config_file(
    agent: Agent, tmp_path: Path, notify_socket: tuple[Path, socket.socket]
) -> None:
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f"""
[[devices]]
id = "agent"
name = "agent in a namespace"
address = "{agent.address}:{agent.port}"
community = "{COMMUNITY}"
poll_interval = 1
timeout = 0.4
retries = 0

[[devices]]
id = "wrong"
name = "wrong community"
address = "{agent.address}:{agent.port}"
community = "not-the-community"
poll_interval = 1
timeout = 0.3
retries = 0
"""
    )
    port = free_port()
    daemon = Daemon(tmp_path / "state", port, notify_socket[0], {"ISPMON_CONFIG": str(config)})
    daemon.state_dir.mkdir()
    daemon.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> object:
                async with http.get(base + path) as resp:
                    return await resp.json() if resp.status == 200 else None

            interfaces = await poll(
                lambda: get("/devices/agent/interfaces"),
                lambda body: bool(body) and any(i["last_sample"] for i in body["items"]),  # type: ignore[index]
                90,
                "a sample of the namespace's interfaces",
            )
            names = {i["name"] for i in interfaces["items"]}  # type: ignore[index]
            assert {"lo", "va0", "vb0"} <= names
            lo = next(i for i in interfaces["items"] if i["name"] == "lo")  # type: ignore[index]
            metrics = await poll(
                lambda: get(f"/interfaces/{lo['id']}/metrics"),
                lambda body: bool(body) and body["count"] >= 2,  # type: ignore[index]
                30,
                "two samples of lo",
            )
            assert all(m["in_bps"] is not None and m["in_bps"] >= 0 for m in metrics["items"])  # type: ignore[index]
            wrong = await get("/devices/wrong")
            assert wrong["state"]["reachable"] is False and wrong["community"] == "[redacted]"  # type: ignore[index]
            summary = await get("/network/summary")
            assert summary["devices"]["up"] == 1 and summary["devices"]["unreachable"] == 1  # type: ignore[index]
    finally:
        code = daemon.terminate()
    assert code == 0
    lines = daemon.log_lines()
    unreachable = [e for e in lines if e.get("event") == "device_unreachable"]
    assert [e["device_id"] for e in unreachable] == ["wrong"]  # once, though it failed every second
    text = daemon.log_path.read_text()
    assert "not-the-community" not in text and COMMUNITY not in text
    assert not [e for e in lines if e.get("event") == "snmp_poll_crashed"]
