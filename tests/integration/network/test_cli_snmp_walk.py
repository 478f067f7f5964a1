"""`ispmon snmp-walk` as an operator runs it, against snmpd in a namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.network.agents import COMMUNITY, V3_AUTH, V3_PRIV, V3_USER, Agent, snmpd_namespace

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpd_namespace(tmp_path_factory.mktemp("snmpd"), veths=1) as found:
        yield found


def walk(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ISPMON_CONFIG")}
    env["ISPMON_STATE_DIR"] = str(tmp_path / "state")  # no database here: not looked up, not created
    return subprocess.run([sys.executable, "-m", "ispmon", "snmp-walk", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_v2c_by_host(agent: Agent, tmp_path: Path) -> None:
    done = walk(f"{agent.address}:{agent.port}", "--community", COMMUNITY, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "counters:  64-bit" in done.stdout and " lo " in done.stdout and " va0 " in done.stdout
    assert "interfaces: 4 (4 polled)" in done.stdout  # lo, the veth to the host, va0, vb0
    assert not (tmp_path / "state").exists()


def test_v3_authpriv_and_wrong_keys(agent: Agent, tmp_path: Path) -> None:
    v3 = [f"{agent.address}:{agent.port}", "--v3", "--user", V3_USER, "--auth-protocol", "SHA",
          "--priv-protocol", "AES", "--priv-key", V3_PRIV, "--timeout", "1", "--retries", "0"]
    done = walk(*v3, "--auth-key", V3_AUTH, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(authPriv)" in done.stdout and " lo " in done.stdout
    wrong = walk(*v3, "--auth-key", "not-the-key", tmp_path=tmp_path)
    assert wrong.returncode == 1 and "auth:" in wrong.stderr and "not-the-key" not in wrong.stderr


def test_device_from_the_config_file_and_bad_options(agent: Agent, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[[devices]]\nid = "r1"\nname = "r1"\naddress = "{agent.address}:{agent.port}"\n'
                      f'community = "{COMMUNITY}"\n')
    done = walk("r1", "--config", str(config), "--json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"community": "[redacted]"' in done.stdout and COMMUNITY not in done.stdout
    bad = walk("192.0.2.1", "--v3", "--user", "u", "--auth-protocol", "SHA-1024", "--auth-key", "12345678",
               tmp_path=tmp_path)
    assert bad.returncode == 2 and "auth_protocol: must be one of" in bad.stderr
    silent = walk("127.0.0.1:9", "--community", "x", "--timeout", "0.3", "--retries", "0", tmp_path=tmp_path)
    assert silent.returncode == 1 and "timeout" in silent.stderr
