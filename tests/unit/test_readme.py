"""README.md must tell the truth: its tables are checked against the code here, and its shell
commands are run against a live daemon in tests/e2e/test_readme_commands.py."""

from __future__ import annotations

import re
from pathlib import Path

from ispmon.api.app import ROUTES
from ispmon.availability.endpoints import PROTOCOL_FIELDS, EndpointSpec
from ispmon.config import Settings, load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def table_rows(heading_text: str, first_header: str) -> list[list[str]]:
    """Rows of the first markdown table after `heading_text` whose header starts with `first_header`."""
    section = README[README.index(heading_text) :]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    rows = {r[0].strip("`"): r[1] for r in table_rows("## Configuration", "setting")}
    assert set(rows) == {name.upper() for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            continue
        default = field.default
        shown = rows[name.upper()]
        if default is None:
            assert shown == "unset", name
        elif isinstance(default, bool):
            assert shown == str(default).lower(), name
        elif isinstance(default, float) and default.is_integer():
            assert shown == str(int(default)), name
        else:
            assert shown == str(default), name


def test_api_table_lists_exactly_the_routes() -> None:
    rows = {(r[0], r[1].strip("`")) for r in table_rows("## REST API", "method")}
    assert rows == {(route.method, route.path) for route in ROUTES}


def test_protocol_table_names_only_real_fields() -> None:
    text = "\n".join(" ".join(r) for r in table_rows("## Add an endpoint", "protocol"))
    named = set(re.findall(r"`([a-z_]+)`", text))
    assert named <= set(EndpointSpec.model_fields), named - set(EndpointSpec.model_fields)
    assert set(PROTOCOL_FIELDS) - {"port"} <= named


def test_example_config_loads(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    loaded = load_config(ROOT / "config" / "ispmon.toml")
    assert [e.id for e in loaded.endpoints] == [
        "api-gateway",
        "radius-auth",
        "uplink-gw",
        "uplink-anycast",
        "resolver-1",
        "core-router-1",
        "mail-smtp",
    ]
    smtp = loaded.endpoints[-1]
    assert smtp.payload == b"QUIT\r\n" and smtp.pattern.search(b"220 mail ESMTP")
    assert [w.id for w in loaded.maintenance] == ["core-weekly"]
    assert smtp.parent == "core-router-1" and [e.id for e in loaded.endpoints if e.canary] == [
        "uplink-gw",
        "uplink-anycast",
    ]
    alerting = loaded.alerting
    kinds = {c.name: [t.kind for t in c.targets] for c in alerting.channels}
    assert kinds == {"email": ["email"], "oncall-sms": ["sms"], "noc-slack": ["slack"]}
    assert "app-password" not in str([c.public_dict() for c in alerting.channels])
    assert [r.id for r in alerting.rules] == ["core-outages", "mail-outages", "slow-api", "certificates"]
    assert [s.after_minutes for s in alerting.policies["core"].steps] == [0, 15, 60]


def test_env_example_names_real_settings() -> None:
    names = re.findall(r"^#?([A-Z_]+)=", (ROOT / "config" / ".env.example").read_text(), re.M)
    assert names and set(names) <= {n.upper() for n in Settings.model_fields}


def _sh_block(heading_text: str) -> list[str]:
    section = README[README.index(heading_text) :]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_systemd_install_lets_the_ispmon_group_read_the_config_after_the_binary_is_in_place() -> None:
    lines = _sh_block("## Deploying with systemd")
    useradd = next(line for line in lines if line.startswith("useradd "))
    assert "--user-group" in useradd.split() and "--system" in useradd.split()
    config = next(
        line for line in lines if line.startswith("install ") and line.endswith("/etc/ispmon/ispmon.toml")
    )
    assert {"-m", "0640", "-g", "ispmon"} <= set(config.split())
    binary = next(i for i, line in enumerate(lines) if "/usr/local/bin/ispmon" in line)
    verify = next(i for i, line in enumerate(lines) if line.startswith("systemd-analyze verify"))
    assert binary < verify, "systemd-analyze verify needs ExecStart's binary installed first"


def test_the_validate_example_prints_what_the_readme_says(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ispmon.cli import main

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(ROOT)
    assert main(["validate", "--offline", "--config", "config/ispmon.toml"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed in " ".join(README.split()), printed


def test_alerting_example_is_a_valid_config_file(tmp_path: Path) -> None:
    """The Alerting section's TOML, copied into a file as it stands, loads without an error."""
    from ispmon.config import load_config

    section = README[README.index("## Alerting") :]
    toml = section[section.index("```toml\n") + 8 : section.index("```", section.index("```toml\n") + 8)]
    path = tmp_path / "alerting.toml"
    path.write_text(toml, encoding="utf-8")
    loaded = load_config(path)
    assert {c.name for c in loaded.alerting.channels} >= {"email", "oncall-sms", "noc-slack", "manager"}
