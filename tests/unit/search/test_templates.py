"""The index templates: every family's mapping is consistent and carries the ECS fields Kibana reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ispmon.search import templates as t

UPTIME_FIELDS = {
    "@timestamp": "date",
    "monitor.id": "keyword",
    "monitor.name": "keyword",
    "monitor.type": "keyword",
    "monitor.status": "keyword",
    "monitor.duration.us": "long",
    "monitor.check_group": "keyword",
    "monitor.timespan": "date_range",
    "summary.up": "integer",
    "summary.down": "integer",
    "url.full": "keyword",
    "error.message": "text",
    "error.type": "keyword",
    "observer.hostname": "keyword",
    "observer.geo.name": "keyword",
    "service.name": "keyword",
    "tags": "keyword",
}


@pytest.mark.parametrize("family", sorted(t.FAMILIES))
def test_no_field_is_both_a_leaf_and_an_object(family: str) -> None:
    paths = set(t.all_fields(family))
    for path in paths:
        for other in paths:
            assert not other.startswith(path + "."), f"{family}: {path} is a leaf and {other} under it"


def test_uptime_reads_its_fields_from_service_status() -> None:
    flat = t.flat_fields("service_status")
    for field, kind in UPTIME_FIELDS.items():
        assert flat.get(field) == kind, field


def test_logs_have_ecs_level_and_event() -> None:
    flat = t.flat_fields("system_logs")
    assert flat["log.level"] == "keyword" and flat["event.action"] == "keyword"
    assert flat["message"] == "text" and flat["message.keyword"] == "keyword"
    assert t.aggregatable("system_logs", "log.level")
    assert not t.aggregatable("system_logs", "message")


def test_names_are_keyword_with_a_text_subfield() -> None:
    flat = t.flat_fields("service_status")
    assert flat["monitor.name"] == "keyword" and flat["monitor.name.text"] == "text"


def test_mapping_nests_dotted_paths() -> None:
    m = t.mapping("service_status")
    assert m["dynamic"] == "strict"
    assert m["properties"]["monitor"]["properties"]["duration"]["properties"]["us"]["type"] == "long"
    assert m["properties"]["@timestamp"]["type"] == "date"
    assert set(t.mappings()) == set(t.FAMILIES)


def test_daily_index_is_the_documents_own_utc_day() -> None:
    late = datetime(2026, 12, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert t.index_name("isp", "service_status", late) == "isp-service-status-2026.12.02"
    assert (
        t.index_name("acme", "system_logs", datetime(2026, 1, 2, tzinfo=UTC)) == "acme-system-logs-2026.01.02"
    )
    assert t.index_name("isp", "maintenance_windows", late) == "isp-maintenance-windows"
    assert t.index_pattern("isp", "service_outage") == "isp-service-outage-*"


def test_templates_compose_common_family_and_settings() -> None:
    comps = t.component_templates("isp")
    for name, body in t.index_templates("isp").items():
        assert body["index_patterns"] and body["priority"] > 100
        for comp in body["composed_of"]:
            assert comp in comps, (name, comp)
    policies = t.ilm_policies("isp", {"service_status": 7})
    assert policies["isp-service-status-policy"]["policy"]["phases"]["delete"]["min_age"] == "7d"
    assert "delete" not in policies["isp-maintenance-windows-policy"]["policy"]["phases"]
