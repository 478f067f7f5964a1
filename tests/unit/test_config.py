"""Configuration: precedence (env > file > defaults) and tables of invalid files with exact errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ispmon.config import Settings, load_config
from ispmon.errors import ConfigError

EP = '[[endpoints]]\nname = "x"\nurl = "http://127.0.0.1/"\n'

# name -> (file text, the error) or (file text, [every error, in order]).
INVALID: dict[str, tuple[str, str | list[str]]] = {
    "not_toml": (
        "this is = = not toml",
        "not valid TOML: Expected '=' after a key in a key/value pair (at line 1, column 6)",
    ),
    "unknown_table": (
        "[settngs]\nservice_check_interval = 5\n",
        "settngs: unknown field (expected [settings], [[endpoints]], [[maintenance]], [channels], "
        "[[alert_rules]], [[escalation_policies]], [[devices]], [[customers]], [[radius_clients]], "
        "[[flow_exporters]] or [[report_schedules]])",
    ),
    "unknown_setting": (
        "[settings]\nservice_check_intervall = 5\n",
        "settings.service_check_intervall: unknown setting",
    ),
    "bad_setting_type": (
        '[settings]\nservice_check_interval = "soon"\n',
        "settings.service_check_interval: Input should be a valid number, unable to parse string as a number",
    ),
    "setting_range": (
        "[settings]\noutage_detection_threshold = 0\n",
        "settings.outage_detection_threshold: Input should be greater than or equal to 1",
    ),
    "bad_log_level": (
        '[settings]\nispmon_log_level = "loud"\n',
        "settings.ispmon_log_level: must be one of debug, info, warning, error, critical",
    ),
    "short_token": (
        '[settings]\nispmon_api_token = "abc"\n',
        "settings.ispmon_api_token: must be at least 16 characters (use a random token)",
    ),
    "short_read_token": (
        '[settings]\nispmon_api_token = "0123456789abcdef"\nispmon_api_read_token = "abc"\n',
        "settings.ispmon_api_read_token: must be at least 16 characters (use a random token)",
    ),
    "read_token_is_the_write_token": (
        '[settings]\nispmon_api_token = "0123456789abcdef"\nispmon_api_read_token = "0123456789abcdef"\n',
        "settings.ispmon_api_read_token: must differ from ISPMON_API_TOKEN (it is the read-only one)",
    ),
    "read_token_alone": (
        '[settings]\nispmon_api_read_token = "0123456789abcdef"\n',
        "settings.ispmon_api_read_token: needs ISPMON_API_TOKEN (without it the API is loopback-only and open,"
        " so a read-only token would restrict nothing)",
    ),
    "endpoint_url_and_authorization_header": (
        '[[endpoints]]\nname = "x"\nurl = "http://u:p@127.0.0.1/"\nheaders = { Authorization = "Basic x" }\n',
        [
            "endpoints[0].url: give credentials either in url (user:password@) or in headers.Authorization, not both",
            "endpoints[0].headers.Authorization: give credentials either in url (user:password@) or in"
            " headers.Authorization, not both",
        ],
    ),
    "endpoints_not_list": ("endpoints = 5\n", "endpoints: Input should be a valid list"),
    "endpoint_missing_url": (
        '[[endpoints]]\nname = "x"\n',
        # Without a url the protocol cannot be inferred either; both keys are missing.
        ["endpoints[0].url: Field required", "endpoints[0].protocol: Field required"],
    ),
    "endpoint_unknown_field": (EP + "bogus = 1\n", "endpoints[0].bogus: unknown field"),
    "endpoint_interval": (
        EP + "check_interval = 0.5\n",
        "endpoints[0].check_interval: Input should be greater than or equal to 1",
    ),
    "endpoint_timeout_ge_interval": (
        EP + "check_interval = 10\ntimeout = 10\n",
        "endpoints[0].timeout: must be less than check_interval (10 >= 10)",
    ),
    "endpoint_bad_regex": (
        EP + 'expected_response_pattern = "("\n',
        "endpoints[0].expected_response_pattern: invalid regular expression: missing ) at position 1",
    ),
    "endpoint_bad_host": (
        '[[endpoints]]\nname = "x"\nurl = "tcp://bad_host!:80"\n',
        "endpoints[0].url: 'bad_host!' is not a valid host name or IP address",
    ),
    "endpoint_port_range": (
        '[[endpoints]]\nname = "x"\nurl = "127.0.0.1:70000"\nprotocol = "tcp"\n',
        "endpoints[0].url: port must be a number from 1 to 65535, got '70000'",
    ),
    "endpoint_field_of_other_protocol": (
        EP + "packet_count = 3\n",
        "endpoints[0].packet_count: does not apply to protocol http (only icmp)",
    ),
    "endpoint_dns_rrtype": (
        '[[endpoints]]\nname = "x"\nurl = "dns://127.0.0.1/example.com?type=BOGUS"\n',
        "endpoints[0].url: record type 'BOGUS' is not one of A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT, CAA, NAPTR",
    ),
    "endpoint_no_protocol": (
        '[[endpoints]]\nname = "x"\nurl = "127.0.0.1:80"\n',
        "endpoints[0].protocol: required: cannot tell it from url '127.0.0.1:80' "
        "(only http://, https://, dns://, tcp://, udp:// and icmp:// URLs say it)",
    ),
    "endpoint_udp_without_payload": (
        '[[endpoints]]\nname = "x"\nurl = "udp://127.0.0.1:53"\n',
        "endpoints[0].send: a udp endpoint needs a payload (send or send_hex)",
    ),
    "endpoint_duplicate_id": (
        '[[endpoints]]\nid = "a"\nname = "x"\nurl = "http://127.0.0.1/"\n'
        '[[endpoints]]\nid = "a"\nname = "y"\nurl = "http://127.0.0.2/"\n',
        "endpoints[1].id: duplicate id 'a' (also endpoints[0])",
    ),
    "endpoint_bad_id": (
        '[[endpoints]]\nid = "Bad/Id"\nname = "x"\nurl = "http://127.0.0.1/"\n',
        "endpoints[0].id: must be a slug: 1-64 lowercase letters, digits, '-' or '_', "
        "starting and ending with a letter or digit",
    ),
    "endpoint_unknown_parent": (
        EP + 'parent = "router"\n',
        "endpoints[0].parent: no endpoint 'router' in this file",
    ),
    "endpoint_parent_cycle": (
        '[[endpoints]]\nid = "a"\nname = "x"\nurl = "http://127.0.0.1/"\nparent = "b"\n'
        '[[endpoints]]\nid = "b"\nname = "y"\nurl = "http://127.0.0.2/"\nparent = "a"\n',
        [
            "endpoints[0].parent: parents form a cycle through 'a'",
            "endpoints[1].parent: parents form a cycle through 'b'",
        ],
    ),
    "channel_invalid_url": (
        '[channels]\npager = ["json://127.0.0.1/x", "nosuch://user:pw@host"]\n',
        "channels.pager: urls[1]: not a valid apprise URL (scheme 'nosuch' is not supported)",
    ),
    "rule_threshold_without_metric": (
        '[[alert_rules]]\nid = "slow"\nkind = "threshold"\nabove = 500\n',
        "alert_rules[0].metric: required for a threshold rule (response_time_ms or a details key)",
    ),
    "rule_unknown_policy": (
        '[[alert_rules]]\nid = "core"\nkind = "outage"\nescalation = "noc"\n',
        "alert_rules[0].escalation: no escalation policy 'noc' (none declared)",
    ),
    "rule_reserved_default_id": (
        '[[alert_rules]]\nid = "default"\nkind = "outage"\n',
        "alert_rules[0].id: 'default' is reserved for the default route (ALERT_NOTIFICATION_CHANNELS)",
    ),
    "policy_steps_out_of_order": (
        '[[escalation_policies]]\nid = "noc"\nsteps = [{after_minutes = 15, channels = ["a"]}, '
        '{after_minutes = 5, channels = ["b"]}]\n',
        "escalation_policies[0].steps[1].after_minutes: must be greater than the previous step's (5 <= 15)",
    ),
    "window_without_scope": (
        '[[maintenance]]\nname = "w"\nstarts_at = "2030-01-01T00:00:00Z"\nends_at = "2030-01-01T01:00:00Z"\n',
        "maintenance[0].endpoint_ids: a window needs a scope: endpoint_ids, tags or all_endpoints = true",
    ),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_names_the_key(name: str, tmp_path: Path) -> None:
    text, expected = INVALID[name]
    messages = [expected] if isinstance(expected, str) else expected
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.errors == [f"{path}: {m}" for m in messages]
    assert str(exc.value) == "; ".join(f"{path}: {m}" for m in messages)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found"):
        load_config(tmp_path / "nope.toml")


def test_environment_overrides_file_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[settings]\nservice_check_interval = 30\noutage_detection_threshold = 5\n" + EP)
    monkeypatch.setenv("SERVICE_CHECK_INTERVAL", "20")
    loaded = load_config(path)
    assert loaded.settings.service_check_interval == 20  # env wins
    assert loaded.settings.outage_detection_threshold == 5  # file wins over the default
    assert loaded.settings.service_check_retries == 3  # default
    # Endpoint defaults come from the effective settings.
    assert loaded.endpoints[0].check_interval == 20 and loaded.endpoints[0].retries == 3


def test_invalid_environment_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTAGE_VERIFICATION_ENABLED", "perhaps")
    with pytest.raises(ConfigError) as exc:
        load_config(None)
    assert str(exc.value).startswith("OUTAGE_VERIFICATION_ENABLED: Input should be a valid boolean")


def test_env_error_named_even_when_the_file_sets_it_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[settings]\napi_port = 8081\n")
    monkeypatch.setenv("API_PORT", "99999")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == "API_PORT: Input should be less than or equal to 65535"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(EP)
    monkeypatch.setenv("ISPMON_CONFIG", str(path))
    loaded = load_config(None)
    assert loaded.path == path and [e.id for e in loaded.endpoints] == ["x"]


EVERYTHING_WRONG = """
[settings]
service_check_intervall = 5
outage_detection_threshold = 0

[[endpoints]]
id = "a"
name = "A"
url = "http://127.0.0.1/"
check_interval = 0.5

[[endpoints]]
id = "b"
name = "B"
url = "http://127.0.0.1/"
parent = "a"  # invalid itself, but declared: not a second error
bogus = 1

[[endpoints]]
id = "c"
name = "C"
url = "http://127.0.0.1/"
parent = "nosuch"

[[maintenance]]
name = "w"
starts_at = "2030-01-01T00:00:00Z"
ends_at = "2030-01-01T01:00:00Z"

[channels]
pager = "nosuch://x"

[[escalation_policies]]
id = "core"
steps = [{after_minutes = 0, channels = ["pager", "sms"]}]

[[alert_rules]]
id = "r1"
kind = "outage"
channels = ["slack"]

[[alert_rules]]
id = "r2"
kind = "outage"
escalation = "noc"
"""


def test_every_error_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(EVERYTHING_WRONG)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.errors == [
        f"{path}: {m}"
        for m in [
            "settings.service_check_intervall: unknown setting",
            "settings.outage_detection_threshold: Input should be greater than or equal to 1",
            "endpoints[0].check_interval: Input should be greater than or equal to 1",
            "endpoints[1].bogus: unknown field",
            "endpoints[2].parent: no endpoint 'nosuch' in this file",
            "maintenance[0].endpoint_ids: a window needs a scope: endpoint_ids, tags or all_endpoints = true",
            "channels.pager: url: not a valid apprise URL (scheme 'nosuch' is not supported)",
            "escalation_policies[0].steps[0].channels[1]: no channel 'sms' in [channels] (pager)",
            "alert_rules[0].channels[0]: no channel 'slack' in [channels] (pager)",
            "alert_rules[1].escalation: no escalation policy 'noc' (core)",
        ]
    ]


def test_a_bad_table_does_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("endpoints = 5\n[settngs]\nx = 1\n[[maintenance]]\nname = 'w'\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [e.removeprefix(f"{path}: ").split(":")[0] for e in exc.value.errors] == [
        "endpoints",
        "settngs",
        "maintenance[0].starts_at",
    ]


def test_default_channels_may_be_undefined_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh install pages the default "email" before anyone defined it: a warning, not an error."""
    path = tmp_path / "c.toml"
    path.write_text('[[alert_rules]]\nid = "r"\nkind = "outage"\nchannels = ["email"]\n')
    loaded = load_config(path)
    assert [r.channels for r in loaded.alerting.rules] == [["email"]]
    assert loaded.alerting.warnings == [
        f"{path}: ALERT_NOTIFICATION_CHANNELS: channel 'email' is not defined in [channels] "
        "(used by alert_rules[0].channels[0]); unless it is registered through the API "
        "(POST /channels/), its notifications are dead-lettered"
    ]
    # Once the default is another channel, "email" is just an undefined name.
    monkeypatch.setenv("ALERT_NOTIFICATION_CHANNELS", "pager")
    path.write_text(path.read_text() + '[channels]\npager = "json://127.0.0.1/hook"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.errors == [
        f"{path}: alert_rules[0].channels[0]: no channel 'email' in [channels] (pager)"
    ]


SECRET = "s3cret"

BAD_DATABASE_URLS = {
    "mysql://u:s3cret@db/x": "must be a postgresql:// URL, e.g. postgresql://ispmon:PASSWORD@db.example.net:5432/ispmon",
    "postgresql+asyncpg://u:s3cret@db/x": "must be a postgresql:// URL, e.g. "
    "postgresql://ispmon:PASSWORD@db.example.net:5432/ispmon",
    "db.example.net": "must be a postgresql:// URL, e.g. postgresql://ispmon:PASSWORD@db.example.net:5432/ispmon",
    # An unencoded '/' in the password ends the authority: what is left looks like host "u", port "s3".
    "postgresql://u:s3/cret@db/x": "the port must be a number from 1 to 65535 "
    "(percent-encode '@', ':', '/', '?' and '#' in the user name and password)",
    "postgresql://u:s3cret@db:99999/x": "the port must be a number from 1 to 65535 "
    "(percent-encode '@', ':', '/', '?' and '#' in the user name and password)",
    "postgresql://u:s3@cret@db/x": "the host is not a valid host name or address "
    "(percent-encode '@', ':', '/', '?' and '#' in the user name and password)",
    "postgresql://u:s3 cret@db/x": "must not contain white space "
    "(percent-encode '@', ':', '/', '?' and '#' in the user name and password; a space is %20)",
}


@pytest.mark.parametrize("url", sorted(BAD_DATABASE_URLS))
def test_malformed_database_url_names_the_key_and_hides_the_password(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError) as exc:
        load_config(None)
    assert exc.value.errors == [f"DATABASE_URL: {BAD_DATABASE_URLS[url]}"]
    assert "s3" not in str(exc.value) and "cret" not in str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ispmon:p%40ss%2Fword@db.example.net:5432/ispmon",
        "postgres://db/ispmon",
        "postgresql:///ispmon?host=/run/postgresql",
        "postgresql://postgres:@/postgres?host=/var/lib/ispmon/postgres",  # the embedded server's
        "postgresql://ispmon@[2001:db8::1]:5432/ispmon",
        "postgresql://ispmon@db1:5432,db2:5433/ispmon",
    ],
)
def test_valid_database_urls(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert load_config(None).settings.database_url == url


def test_database_url_in_the_file_is_named_as_the_file_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[settings]\ndatabase_url = "mysql://u:s3cret@db/x"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: settings.database_url: must be a postgresql:// URL")
    assert SECRET not in str(exc.value)


TOKEN = "a-token-of-16-chars-or-more"


@pytest.mark.parametrize(
    ("host", "token", "error"),
    [
        ("127.0.0.1", None, None),
        ("::1", None, None),
        ("localhost", None, None),
        (
            "0.0.0.0",
            None,
            "API_HOST: '0.0.0.0' is not a loopback address: set ISPMON_API_TOKEN to listen there "
            "(writes then need it), or use 127.0.0.1",
        ),
        (
            "192.0.2.10",
            None,
            "API_HOST: '192.0.2.10' is not a loopback address: set ISPMON_API_TOKEN to listen there "
            "(writes then need it), or use 127.0.0.1",
        ),
        ("0.0.0.0", TOKEN, None),
    ],
)
def test_api_host_beyond_loopback_needs_a_token(
    host: str, token: str | None, error: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_HOST", host)
    if token:
        monkeypatch.setenv("ISPMON_API_TOKEN", token)
    if error is None:
        assert load_config(None).settings.api_host == host
    else:
        with pytest.raises(ConfigError) as exc:
            load_config(None)
        assert exc.value.errors == [error]


def test_api_host_in_the_file_is_named_as_the_file_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[settings]\napi_host = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: settings.api_host: '0.0.0.0' is not a loopback address")
