"""systemd/ispmon.service: accepted by `systemd-analyze verify`, and the settings we rely on are there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ispmon.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value in order (systemd keys such as Environment= may repeat, which
    configparser would collapse to the last one)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {raw!r}"
        assert not line.endswith("\\"), "continuation lines are not used in this unit"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def ispmon_command() -> str:
    """The ispmon console script of this interpreter's installation (what a real install runs)."""
    # The interpreter's own scripts directory first: shutil.which may return a wrapper (a pyenv
    # shim) rather than the script pip installed.
    script = Path(sysconfig.get_path("scripts")) / "ispmon"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    found = shutil.which("ispmon")
    if found:
        return found
    return f"{sys.executable} -m ispmon"


@pytest.fixture
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze not found: install systemd (apt-get install systemd) to check the unit; "
            "CI installs it"
        )
    return path


# Lines about our unit that are acceptable, per systemd version. The ispmon user is created at
# install time (systemd/README.md, step 1), so a build or CI machine normally lacks it; systemd 252
# does not resolve User=/Group= during verify, but other versions may say the user is unknown.
# That is a property of the machine running the test, not a defect of the unit.
ACCEPTABLE = [
    re.compile(r"(user|group)\b.*\bispmon\b.*(not exist|unknown|no such|failed to resolve)", re.I),
]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    # verify checks that ExecStart's binary exists and is executable, so point it at the script of
    # this installation instead of /usr/local/bin/ispmon.
    text = UNIT.read_text(encoding="utf-8")
    text, count = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={ispmon_command()}", text)
    assert count == 1
    unit = tmp_path / "ispmon.service"
    unit.write_text(text, encoding="utf-8")

    result = subprocess.run(
        # --man=no: no Documentation=man: pages to look up on a machine without man-db.
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = (result.stdout + result.stderr).splitlines()
    # Lines about other units (the host's own, or network-online.target's dependencies) are not
    # ours to fix; everything that names our unit or its file is a finding.
    ours = [line for line in output if "ispmon.service" in line or str(tmp_path) in line]
    unexpected = [line for line in ours if not any(p.search(line) for p in ACCEPTABLE)]
    assert unexpected == [], "\n".join(output)
    assert result.returncode == 0, "\n".join(output)


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    """Guards the hardening against a careless removal: the exposure score must stay 'OK'."""
    analyze = systemd_analyze()
    unit = tmp_path / "ispmon.service"
    shutil.copyfile(UNIT, unit)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # Debian 12 ships systemd 252; an older one cannot check the unit offline, which is a failure here.
    assert not ("--offline" in result.stderr and result.returncode != 0), (
        "systemd-analyze security --offline needs systemd >= 250: " + result.stderr
    )
    match = re.search(r"Overall exposure level for ispmon\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    # 2.1 when written; the remaining exposure is the network access a monitor cannot do without.
    assert float(match.group(1)) <= 3.0, result.stdout


def test_unit_settings(service: dict[str, list[str]]) -> None:
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/local/bin/ispmon run",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "5",
        "TimeoutStopSec": "30",
        "KillMode": "mixed",
        "User": "ispmon",
        "Group": "ispmon",
        "StateDirectory": "ispmon",
        "ConfigurationDirectory": "ispmon",
        "EnvironmentFile": "-/etc/ispmon/ispmon.env",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "SystemCallFilter": "@system-service",
        "UMask": "0027",
        "LimitNOFILE": "65536",
    }
    actual = {key: service.get(key, [None])[-1] for key in expected}
    assert actual == expected


def test_capabilities_are_only_net_raw(service: dict[str, list[str]]) -> None:
    assert "CAP_NET_RAW" in service["AmbientCapabilities"][-1].split()
    assert service["CapabilityBoundingSet"][-1].split() == ["CAP_NET_RAW"]


def test_environment_and_address_families(service: dict[str, list[str]]) -> None:
    assert "ISPMON_CONFIG=/etc/ispmon/ispmon.toml" in service["Environment"]
    families = service["RestrictAddressFamilies"][-1].split()
    # AF_UNIX carries sd_notify and the embedded PostgreSQL's socket.
    assert set(families) == {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}


def test_install_section() -> None:
    sections = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
