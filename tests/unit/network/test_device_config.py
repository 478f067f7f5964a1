"""``[[devices]]`` in the config file: loaded, and every error names ``devices[i].field``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ispmon.config import Settings, load_config
from ispmon.errors import ConfigError

GOOD = """
[[endpoints]]
id = "uplink"
name = "Uplink"
url = "icmp://192.0.2.1"
protocol = "icmp"

[[devices]]
name = "Core 1"
address = "192.0.2.1"
community = "public"
parent = "uplink"
interfaces = { exclude = ['\\.\\d+$'], types = ["ethernetCsmacd"] }

[[devices]]
id = "edge"
name = "Edge"
address = "192.0.2.2:1161"
version = "3"
username = "noc"
auth_protocol = "SHA"
auth_key = "authpass123"
priv_protocol = "AES"
priv_key = "privpass123"
poll_interval = 30
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_devices_load(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    loaded = load_config(path)
    core, edge = loaded.devices
    assert (core.id, core.parent, core.interfaces.types, core.interfaces.exclude) == (
        "core-1", "uplink", [6], [r"\.\d+$"])
    assert (edge.port, edge.security_level, edge.poll_interval) == (1161, "authPriv", 30.0)


def test_every_device_error_is_reported_naming_its_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[[devices]]
name = "a"
address = "192.0.2.1"
version = "3"
auth_protocol = "SHA-1024"

[[devices]]
name = "b"
address = "192.0.2.2"
community = "x"
poll_interval = 0.5

[[devices]]
name = "c"
address = "192.0.2.3"
community = "x"
parent = "nowhere"

[[devices]]
name = "c"
address = "192.0.2.4"
community = "x"
"""
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.errors == [
        f"{path}: devices[0].auth_protocol: must be one of MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512,"
        " got 'SHA-1024'",
        f"{path}: devices[1].poll_interval: Input should be greater than or equal to 1",
        f"{path}: devices[2].parent: no endpoint 'nowhere' in this file",
        f"{path}: devices[3].id: duplicate id 'c' (also devices[2])",
    ]
