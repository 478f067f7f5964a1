"""The shipped Kibana saved objects, checked against Kibana's own rules and our index templates.

The rules and checkers are in kibana_rules.py; each checker is also run here on a broken object,
so that a check that could never fail would show.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ispmon.search.kibana_objects import SHIPPED_DIR, build, render
from ispmon.search.templates import DEFAULT_PREFIX, FAMILIES, flat_fields, index_name, index_pattern
from tests.unit.kibana.kibana_rules import (
    AGGREGATABLE,
    CORE_VERSION,
    NUMERIC,
    TYPE_VERSIONS,
    dashboard_problems,
    family_of,
    field_problems,
)

ROOT = Path(__file__).resolve().parents[3]


def shipped() -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(SHIPPED_DIR.glob("*.ndjson")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines and all(lines), f"{path.name}: empty file or blank line"
        files[path.name] = [json.loads(line) for line in lines]
        assert all(isinstance(o, dict) for o in files[path.name])
    return files


FILES = shipped()
ALL = [(name, obj) for name, objects in FILES.items() for obj in objects]


def by_key() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["type"], o["id"]): o for _, o in ALL}


# ----- the files ----------------------------------------------------------------------------------------


def test_the_files_are_the_generators_output_and_kibana_dir_points_at_them() -> None:
    generated = build()
    assert sorted(generated) == sorted(FILES)
    for name, objects in generated.items():
        assert (SHIPPED_DIR / name).read_text(encoding="utf-8") == render(objects), (
            f"{name} is stale: run python -m ispmon.search.kibana_objects --write"
        )
    top = sorted(p.name for p in (ROOT / "kibana").glob("*.ndjson"))
    assert top == sorted(FILES)
    for name in top:
        assert (ROOT / "kibana" / name).resolve() == (SHIPPED_DIR / name).resolve()


def test_every_line_is_a_saved_object_of_a_kibana_8_14_export() -> None:
    for name, obj in ALL:
        assert {
            "type",
            "id",
            "attributes",
            "references",
            "coreMigrationVersion",
            "typeMigrationVersion",
        } <= set(obj)
        assert obj["coreMigrationVersion"] == CORE_VERSION, (name, obj["id"])
        assert obj["typeMigrationVersion"] == TYPE_VERSIONS[obj["type"]], (name, obj["id"])
        assert isinstance(obj["attributes"].get("title"), str) and obj["attributes"]["title"]
        for ref in obj["references"]:
            assert set(ref) == {"type", "id", "name"}


def test_ids_are_unique_in_a_file_and_the_same_object_in_every_file() -> None:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for name, objects in FILES.items():
        keys = [(o["type"], o["id"]) for o in objects]
        assert len(keys) == len(set(keys)), name  # Kibana refuses a file with duplicates
        for obj in objects:
            assert seen.setdefault((obj["type"], obj["id"]), obj) == obj, (name, obj["id"])
    assert len({i for _, i in seen}) == len(seen)  # an id names one object, whatever its type


def test_every_reference_resolves_in_its_own_file() -> None:
    for name, objects in FILES.items():
        keys = {(o["type"], o["id"]) for o in objects}
        for obj in objects:
            for ref in obj["references"]:
                assert (ref["type"], ref["id"]) in keys, f"{name}: {obj['id']} -> {ref}"


def test_visualizations_parse_and_name_their_data_view_as_kibana_does() -> None:
    objects = by_key()
    visualizations = [o for _, o in ALL if o["type"] == "visualization"]
    assert len({o["id"] for o in visualizations}) == 17
    for vis in visualizations:
        attrs = vis["attributes"]
        state = json.loads(attrs["visState"])
        assert state["title"] == attrs["title"]
        assert state["type"] in {"pie", "metric", "line", "area", "histogram", "table"}
        assert len({a["id"] for a in state["aggs"]}) == len(state["aggs"])
        assert {a["schema"] for a in state["aggs"]} <= {"metric", "segment", "group", "bucket", "split"}
        if state["type"] in ("line", "area", "histogram"):
            metric_ids = {a["id"] for a in state["aggs"] if a["schema"] == "metric"}
            assert {s["data"]["id"] for s in state["params"]["seriesParams"]} == metric_ids
        json.loads(attrs["uiStateJSON"])
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["indexRefName"] == "kibanaSavedObjectMeta.searchSourceJSON.index"
        assert source["query"]["language"] == "kuery"
        (ref,) = vis["references"]
        assert ref["name"] == source["indexRefName"] and ref["type"] == "index-pattern"
        assert objects[("index-pattern", ref["id"])]


def test_the_system_logs_search_shows_mapped_fields_newest_first() -> None:
    objects = by_key()
    searches = [o for _, o in ALL if o["type"] == "search"]
    assert [s["attributes"]["title"] for s in searches] == ["ispmon System Logs"]
    for search in searches:
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        (ref,) = search["references"]
        assert ref["name"] == source["indexRefName"] == "kibanaSavedObjectMeta.searchSourceJSON.index"
        fields = flat_fields(family_of(objects[(ref["type"], ref["id"])]))
        assert all(column in fields for column in search["attributes"]["columns"])
        assert [fields[f] for f, _ in search["attributes"]["sort"]] == ["date"]


def test_data_views_match_the_template_index_patterns() -> None:
    views = [o for _, o in ALL if o["type"] == "index-pattern"]
    families = {family_of(v) for v in views}
    assert families == set(FAMILIES)  # the five families and the maintenance windows
    for view in views:
        json.loads(view["attributes"]["fields"])
        json.loads(view["attributes"]["fieldAttrs"])
        time_field = view["attributes"].get("timeFieldName")
        if time_field is not None:
            assert flat_fields(family_of(view))[time_field] == "date"


@pytest.mark.parametrize("prefix", [DEFAULT_PREFIX, "acme", "eu.1"])
def test_data_views_match_the_indices_the_feed_writes_and_no_others(prefix: str) -> None:
    views = [o for f in build(prefix).values() for o in f if o["type"] == "index-pattern"]
    at = datetime(2026, 12, 2, 23, 59, tzinfo=UTC)
    for family in FAMILIES:
        index = index_name(prefix, family, at)
        matching = {
            v["attributes"]["title"] for v in views if fnmatch.fnmatchcase(index, v["attributes"]["title"])
        }
        assert matching == {index_pattern(prefix, family)}, (family, index, matching)


def test_every_field_used_exists_with_a_type_its_aggregation_needs() -> None:
    objects = by_key()
    problems = [p for _, o in ALL if o["type"] == "visualization" for p in field_problems(o, objects)]
    assert problems == []


def test_the_field_check_catches_a_text_field_a_missing_one_and_a_bad_query() -> None:
    objects = by_key()
    pie = copy.deepcopy(objects[("visualization", "ispmon-isp-service-status-overview")])
    state = json.loads(pie["attributes"]["visState"])
    state["aggs"][1]["params"]["field"] = "error_message"  # text: Kibana cannot aggregate on it
    pie["attributes"]["visState"] = json.dumps(state)
    assert field_problems(pie, objects) == [
        "ispmon-isp-service-status-overview: agg 2 (terms): 'error_message' is text, not one of "
        f"{sorted(AGGREGATABLE)}"
    ]
    state["aggs"][1]["params"]["field"] = "no_such_field"
    pie["attributes"]["visState"] = json.dumps(state)
    source = json.loads(pie["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    source["query"]["query"] = "status:down and service_id > now"
    pie["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] = json.dumps(source)
    assert [p.split(": ", 2)[1:] for p in field_problems(pie, objects)] == [
        ["agg 2 (terms)", "'no_such_field' is not in the mapping"],
        ["search source query", f"'service_id' is keyword, not one of {sorted(NUMERIC | {'date'})}"],
    ]


def test_dashboards_follow_kibanas_dashboard_schema() -> None:
    boards = {o["attributes"]["title"]: o for _, o in ALL if o["type"] == "dashboard"}
    assert set(boards) == {"Service Availability", "Network Performance", "Customer Usage"}
    for board in boards.values():
        assert dashboard_problems(board) == [], board["id"]


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (lambda b, p: b["attributes"].update(layout="grid"), "attribute 'layout' is not in"),
        (
            lambda b, p: b["attributes"].update(panelsJSON=json.loads(b["attributes"]["panelsJSON"])),
            "panelsJSON",
        ),
        (lambda b, p: p[0]["gridData"].update(x=44), "outside the 48-column grid"),
        (lambda b, p: p[1]["gridData"].update(x=0, y=0), "overlaps"),
        (lambda b, p: p[0]["gridData"].pop("i"), "gridData needs"),
        (lambda b, p: p[0].update(panelRefName="panel_0"), "no reference named"),
        (
            lambda b, p: b["references"].append({**b["references"][0], "name": "x:panel_x"}),
            "used by no panel",
        ),
    ],
)
def test_the_dashboard_check_catches(breakage: Any, problem: str) -> None:
    board = copy.deepcopy(by_key()[("dashboard", "ispmon-isp-service-availability")])
    panels = json.loads(board["attributes"]["panelsJSON"])
    breakage(board, panels)
    if isinstance(board["attributes"]["panelsJSON"], str):
        board["attributes"]["panelsJSON"] = json.dumps(panels)
    assert any(problem in p for p in dashboard_problems(board)), dashboard_problems(board)


def test_the_service_availability_dashboard_holds_the_seeds_eight_visualizations() -> None:
    objects = by_key()
    board = objects[("dashboard", "ispmon-isp-service-availability")]
    titles = {objects[(r["type"], r["id"])]["attributes"]["title"] for r in board["references"]}
    assert titles == {
        "Service Status Overview",
        "Active Outages",
        "Service Response Time",
        "Service Status History",
        "Recent Outages",
        "Outages by Service",
        "Outages by Severity",
        "Maintenance Windows",
    }
    kinds = {
        objects[(r["type"], r["id"])]["attributes"]["title"]: json.loads(
            objects[(r["type"], r["id"])]["attributes"]["visState"]
        )["type"]
        for r in board["references"]
    }
    assert kinds["Service Status Overview"] == "pie" and kinds["Active Outages"] == "metric"
    assert kinds["Service Response Time"] == "line" and kinds["Service Status History"] == "area"
    assert kinds["Outages by Severity"] == "histogram" and kinds["Maintenance Windows"] == "table"


def test_current_state_views_ignore_the_time_picker() -> None:
    """An outage opened days ago and still open, and next week's window, show in any time range:
    their data views have no time field."""
    objects = by_key()
    for vis_id in ("ispmon-isp-active-outages", "ispmon-isp-maintenance-windows"):
        (ref,) = objects[("visualization", vis_id)]["references"]
        assert "timeFieldName" not in objects[("index-pattern", ref["id"])]["attributes"]


def test_another_prefix_changes_ids_and_patterns_only() -> None:
    acme = build("acme")
    objects = [o for f in acme.values() for o in f]
    assert all(o["id"].startswith("ispmon-acme-") for o in objects)
    patterns = {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert patterns == {index_pattern("acme", f) for f in FAMILIES}
    for obj in objects:
        for ref in obj["references"]:
            assert ref["id"].startswith("ispmon-acme-")
    assert "Service Availability (acme)" in {o["attributes"]["title"] for o in objects}
