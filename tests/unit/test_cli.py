"""The `ispmon` command in-process: exit codes and the lines it prints (no daemon, no database).

`ispmon check` speaks the Nagios plugin convention (2 is CRITICAL), so whatever keeps it from
probing exits 3 (UNKNOWN) with one line on stdout; the other commands exit 2 on a config error,
one line per error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ispmon.cli import main
from ispmon.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    # No database anywhere: a lookup by id must not create one either.
    monkeypatch.setenv("ISPMON_STATE_DIR", str(tmp_path / "state"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exits
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["check"],
            "UNKNOWN   ispmon check: the following arguments are required: target (see ispmon check --help)",
        ),
        (
            ["check", "--timeout", "soon", "http://127.0.0.1/"],
            "UNKNOWN   ispmon check: argument --timeout: invalid float value: 'soon' (see ispmon check --help)",
        ),
        (
            ["check", "--protocol", "gopher", "127.0.0.1:70"],
            "UNKNOWN   ispmon check: argument --protocol: invalid choice: 'gopher' (choose from 'http', "
            "'https', 'tcp', 'udp', 'dns', 'icmp') (see ispmon check --help)",
        ),
        (
            ["check", "--bogus", "http://127.0.0.1/"],
            "UNKNOWN   ispmon check: unrecognized arguments: --bogus (see ispmon check --help)",
        ),
        (
            ["check", "nosuch"],
            "UNKNOWN   ispmon check: target: cannot tell the protocol of 'nosuch' (no endpoint with that id "
            "either); use a URL (http://, https://, dns://, tcp://, udp://, icmp://) or --protocol",
        ),
        (
            ["check", "tcp://bad_host!:80"],
            "UNKNOWN   ispmon check: url: 'bad_host!' is not a valid host name or IP address",
        ),
        (
            ["check", "--timeout", "0", "http://127.0.0.1:1/"],
            "UNKNOWN   ispmon check: timeout: Input should be greater than 0",
        ),
        (
            ["check", "--retries", "-1", "http://127.0.0.1:1/"],
            "UNKNOWN   ispmon check: retries: Input should be greater than or equal to 0",
        ),
    ],
)
def test_check_usage_errors_are_unknown_in_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out, err) == (3, line + "\n", "")
    assert not (tmp_path / "state" / "postgres").exists()


def test_check_with_an_invalid_config_file_is_unknown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[settings]\nservice_check_interval = "soon"\nservice_check_retries = -1\n')
    code, out, _ = run(["check", "--config", str(bad), "http://127.0.0.1:1/"], capsys)
    assert code == 3
    assert out == (
        f"UNKNOWN   ispmon check: {bad}: settings.service_check_interval: Input should be a valid number, "
        f"unable to parse string as a number; {bad}: settings.service_check_retries: Input should be "
        "greater than or equal to 0\n"
    )


def test_run_lists_every_config_error_on_its_own_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[endpoints]]\nname = "x"\nurl = "http://127.0.0.1/"\ncheck_interval = 0.5\nbogus = 1\n')
    code, out, err = run(["run", "--config", str(bad)], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"ispmon: config error: {bad}: endpoints[0].check_interval: Input should be greater than or equal to 1",
        f"ispmon: config error: {bad}: endpoints[0].bogus: unknown field",
    ]


def test_validate_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["validate", "--config", str(ROOT / "config" / "ispmon.toml")], capsys)
    assert (code, err) == (0, "")
    assert out == (
        f"ok: {ROOT / 'config' / 'ispmon.toml'}: 7 endpoints, 1 maintenance window, 3 channels, "
        "4 alert rules, 1 escalation policy\n"
    )


def test_validate_lists_every_error_and_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[settings]\napi_port = 99999\n[[endpoints]]\nname = "x"\nurl = "tcp://127.0.0.1"\n'
        '[[alert_rules]]\nid = "r"\nkind = "outage"\nchannels = ["sms"]\n'
    )
    code, out, err = run(["validate", "--config", str(bad)], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"ispmon: config error: {bad}: settings.api_port: Input should be less than or equal to 65535",
        f"ispmon: config error: {bad}: endpoints[0].url: a tcp target needs a port (host:port, or the port field)",
        f"ispmon: config error: {bad}: alert_rules[0].channels[0]: no channel 'sms' in [channels] (none declared)",
    ]


def test_validate_warns_about_undefined_default_channels(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[endpoints]]\nname = "Web"\nurl = "http://127.0.0.1/"\n')
    code, out, err = run(["validate", "--config", str(path)], capsys)
    assert code == 0
    assert (
        out
        == f"ok: {path}: 1 endpoint, 0 maintenance windows, 0 channels, 0 alert rules, 0 escalation policies\n"
    )
    assert err == (
        f"ispmon: warning: {path}: ALERT_NOTIFICATION_CHANNELS: channel 'email' is not defined in [channels]; "
        "unless it is registered through the API (POST /channels/), its notifications are dead-lettered\n"
    )


def test_validate_without_a_file_checks_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["validate"], capsys)[:2] == (
        0,
        "ok: settings (no config file: give --config or set ISPMON_CONFIG)\n",
    )
    monkeypatch.setenv("DATABASE_URL", "mysql://monitor:s3cret@db/x")
    code, out, err = run(["validate"], capsys)
    assert code == 2 and "s3cret" not in out + err
    assert err == (
        "ispmon: config error: DATABASE_URL: must be a postgresql:// URL, e.g. "
        "postgresql://ispmon:PASSWORD@db.example.net:5432/ispmon\n"
    )


def test_db_url_prints_database_url_as_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As given, password and all: it is printed for use (psql "$(ispmon db-url)"), never logged.
    monkeypatch.setenv("DATABASE_URL", "postgresql://monitor:s3cret@db.example.net/ispmon")
    assert run(["db-url"], capsys) == (0, "postgresql://monitor:s3cret@db.example.net/ispmon\n", "")


def test_db_url_when_the_embedded_server_is_not_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(["db-url"], capsys)
    pgdata = (tmp_path / "state" / "postgres").resolve()
    assert (code, out) == (1, "")
    assert err.startswith(
        f"ispmon: the embedded PostgreSQL in {pgdata} is not running (none has been created"
    )
    assert not pgdata.exists()  # nothing was started or created


def test_db_url_of_a_running_embedded_server(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Read from postmaster.pid, the file PostgreSQL writes while it runs (here with this test's own
    pid standing in for the postmaster's; tests/e2e connects with the URL of a real one)."""
    pgdata = tmp_path / "state" / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("17\n")
    lines = [str(os.getpid()), str(pgdata), "1700000000", "5432", str(pgdata), "", "  1234  5678", "ready   "]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    assert run(["db-url"], capsys) == (0, f"postgresql://postgres@/postgres?host={pgdata.resolve()}\n", "")
    (pgdata / "postmaster.pid").write_text("\n".join([*lines[:-1], "starting"]) + "\n")
    assert run(["db-url"], capsys)[0] == 1
