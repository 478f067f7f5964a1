"""The feed's settings are checked at load time, each error naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ispmon.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"elasticsearch_url": "es.example.net:9200"}, "must be an http:// or https:// URL"),
        ({"elasticsearch_url": "ftp://es.example.net"}, "must be an http:// or https:// URL"),
        ({"elasticsearch_username": "elastic"}, "basic auth needs both"),
        (
            {"elasticsearch_api_key": "k", "elasticsearch_username": "u", "elasticsearch_password": "p"},
            "not both",
        ),
        ({"elasticsearch_ca_file": "/nonexistent/ca.pem"}, "is not a readable file"),
        ({"elasticsearch_index_prefix": "ISP"}, "elasticsearch_index_prefix"),
    ],
)
def test_bad_feed_settings_name_the_key(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Settings(**kwargs)
    assert message in str(exc.value)


def test_good_feed_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = Settings(
        elasticsearch_url=" https://es.example.net:9200 ",
        elasticsearch_ca_file=ca,
        elasticsearch_sync_interval=1,
    )
    assert s.elasticsearch_url == "https://es.example.net:9200" and s.elasticsearch_sync_interval == 1
    assert Settings().elasticsearch_url is None and Settings().elasticsearch_index_prefix == "isp"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("status=30,bogus=4", "unknown family 'bogus'"),
        ("maintenance_windows=4", "unknown family"),  # not a dated family: nothing to delete by age
        ("logs", "the days of 'logs' must be a whole number"),
        ("logs=-1", "the days of 'logs' must be a whole number"),
        ("logs=36501", "from 0 to 36500"),
        ("status=3,service_status=4", "given twice"),
    ],
)
def test_a_bad_per_family_retention_names_the_setting(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Settings(elasticsearch_retention=value)
    assert "elasticsearch_retention" in str(exc.value) and message in str(exc.value)


def test_per_family_retention_by_short_or_full_name() -> None:
    s = Settings(elasticsearch_retention=" status=30, OUTAGE=730 ,system_logs=14,")
    assert s.elasticsearch_retention_by_family == {
        "service_status": 30,
        "service_outage": 730,
        "system_logs": 14,
    }
    assert Settings().elasticsearch_retention_by_family == {}
