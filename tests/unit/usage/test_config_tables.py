"""``[[customers]]`` and ``[[radius_clients]]`` in the config file: every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ispmon.config import load_config
from ispmon.errors import ConfigError

GOOD = """
[[radius_clients]]
id = "bras-1"
address = "192.0.2.0/28"
secret = "s3cret-in-file"

[[customers]]
id = "acme"
name = "ACME"
quota_bytes = 1_000_000
period = "weekly"
usernames = ["acme@isp"]
prefixes = ["198.51.100.0/29"]
enforcement = { policy = "webhook", url = "https://billing.example.net/hook" }
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "ispmon.toml"
    path.write_text(text)
    return load_config(path)


def test_a_valid_file_loads_both_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISPMON_CONFIG", raising=False)
    config = load(tmp_path, GOOD)
    assert [c.id for c in config.customers] == ["acme"]  # type: ignore[attr-defined]
    assert config.radius_clients[0].coa_port == 3799  # type: ignore[attr-defined]
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[customers]]\nid = "a"\nname = "A"\nquota_bytes = 0\n', "customers[0].quota_bytes:"),
        ('[[customers]]\nid = "a"\nname = "A"\nperiod = "daily"\nreset_day = 5\n', "customers[0].reset_day:"),
        ('[[customers]]\nid = "a"\nname = "A"\nusernames = ["x", "x"]\n', "customers[0].usernames[1]:"),
        (
            '[[customers]]\nid = "a"\nname = "A"\nenforcement = { policy = "throttle" }\n',
            "customers[0].enforcement.policy:",
        ),
        (
            '[[customers]]\nid = "a"\nname = "A"\n[[customers]]\nid = "a"\nname = "B"\n',
            "customers[1].id: duplicate id 'a'",
        ),
        (
            (
                '[[customers]]\nid = "a"\nname = "A"\nusernames = ["x"]\n'
                '[[customers]]\nid = "b"\nname = "B"\nusernames = ["x"]\n'
            ),
            "customers[1].usernames[0]: 'x' is also in customers[0]",
        ),
        ('[[radius_clients]]\nid = "n"\naddress = "not-an-ip"\nsecret = "s"\n', "radius_clients[0].address:"),
        ('[[radius_clients]]\nid = "n"\naddress = "10.0.0.1"\n', "radius_clients[0].secret:"),
        (
            '[[radius_clients]]\nid = "n"\naddress = "10.0.0.1"\nsecret = "s"\ncoa_port = 0\n',
            "radius_clients[0].coa_port:",
        ),
        ("[settings]\nradius_acct_port = 70000\n", "settings.radius_acct_port:"),
        ('[settings]\nradius_acct_address = "everywhere"\n', "settings.radius_acct_address:"),
    ],
)
def test_each_bad_table_names_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.delenv("ISPMON_CONFIG", raising=False)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert any(message in e for e in caught.value.errors), caught.value.errors


def test_a_secret_is_never_in_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[[radius_clients]]\nid = "n"\naddress = "bad"\nsecret = "' + "k" * 200 + '"\n')
    assert "kkkk" not in str(caught.value)
