"""Kibana's saved-object rules, written out (no Kibana is installable here; FIELD-NOTES), and the
checkers test_kibana_files.py runs on the shipped objects.

What a Kibana 8.14 export looks like (versions, string-encoded JSON attributes, reference
naming), Kibana's dashboard attribute schema (`dashboard_saved_object/schema/v1..v3`: the v1
attribute set with unknown keys forbidden; gridData x, y, w, h numbers and i a string; the
48-column grid), and the field types each aggregation takes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ispmon.search.templates import DEFAULT_PREFIX, FAMILIES, flat_fields, index_pattern

# What a Kibana 8.14 export writes (FIELD-NOTES); import takes these on 8.14 and later, and 9.x.
CORE_VERSION = "8.8.0"
TYPE_VERSIONS = {
    "dashboard": "10.2.0",
    "visualization": "8.5.0",
    "index-pattern": "8.0.0",
    "search": "10.3.0",
}
# Kibana's dashboard attributes (schema v1, unknowns forbidden; v2/v3 add controlGroupInput / sections).
DASHBOARD_KEYS = {
    "title": str,
    "description": str,
    "kibanaSavedObjectMeta": dict,
    "timeRestore": bool,
    "timeFrom": str,
    "timeTo": str,
    "refreshInterval": dict,
    "controlGroupInput": dict,
    "panelsJSON": str,
    "optionsJSON": str,
    "hits": int,
    "version": int,
    "sections": list,
}
GRID_COLUMNS = 48

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
AGGREGATABLE = NUMERIC | {"keyword", "date", "boolean", "ip"}
# Field types each aggregation accepts (Kibana's agg types filter fields the same way).
AGG_FIELD_TYPES: dict[str, set[str]] = {
    "avg": NUMERIC,
    "sum": NUMERIC,
    "median": NUMERIC,
    "percentiles": NUMERIC,
    "min": NUMERIC | {"date"},
    "max": NUMERIC | {"date"},
    "cardinality": AGGREGATABLE,
    "top_hits": AGGREGATABLE,
    "terms": AGGREGATABLE,
    "date_histogram": {"date"},
    "histogram": NUMERIC,
    "range": NUMERIC,
}
# A KQL clause: field, then an operator (`f:v`, `f:*`, `f > now`).
KQL_CLAUSE = re.compile(r"(?<![\w.@\"])(@?[A-Za-z_][\w.]*)\s*(:|<=|>=|<|>)")
KQL_WORDS = {"and", "or", "not"}


def family_of(data_view: dict[str, Any]) -> str:
    title = data_view["attributes"]["title"]
    (family,) = [f for f in FAMILIES if index_pattern(DEFAULT_PREFIX, f) == title]
    return family


def field_problems(vis: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Every field the visualization aggregates on or queries exists in its family's mapping,
    with a type that aggregation can use."""
    state = json.loads(vis["attributes"]["visState"])
    source = json.loads(vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    ref = next(r for r in vis["references"] if r["name"] == source["indexRefName"])
    fields = flat_fields(family_of(objects[(ref["type"], ref["id"])]))
    problems = []

    def need(field: str, allowed: set[str], where: str) -> None:
        kind = fields.get(field)
        if kind is None:
            problems.append(f"{vis['id']}: {where}: {field!r} is not in the mapping")
        elif kind not in allowed:
            problems.append(f"{vis['id']}: {where}: {field!r} is {kind}, not one of {sorted(allowed)}")

    def kql(query: str, where: str) -> None:
        for field, op in KQL_CLAUSE.findall(query):
            if field.lower() in KQL_WORDS:
                continue
            need(field, AGGREGATABLE | {"text"} if op == ":" else NUMERIC | {"date"}, f"{where} query")

    for agg in state["aggs"]:
        kind, params = agg["type"], agg["params"]
        if kind == "count":
            continue
        if kind == "filters":
            for f in params["filters"]:
                assert f["input"]["language"] == "kuery"
                kql(f["input"]["query"], f"agg {agg['id']}")
            continue
        assert kind in AGG_FIELD_TYPES, f"{vis['id']}: no rule for agg type {kind}"
        need(params["field"], AGG_FIELD_TYPES[kind], f"agg {agg['id']} ({kind})")
        if kind == "top_hits":
            need(params["sortField"], NUMERIC | {"date"}, f"agg {agg['id']} sortField")
    kql(source["query"]["query"], "search source")
    return problems


def dashboard_problems(board: dict[str, Any]) -> list[str]:
    """Kibana's dashboard attribute schema, its panel shape and the reference naming."""
    attrs = board["attributes"]
    problems = [
        f"attribute {k!r} is not in Kibana's dashboard schema" for k in attrs if k not in DASHBOARD_KEYS
    ]
    problems += [
        f"attribute {k!r} should be {t.__name__}"
        for k, t in DASHBOARD_KEYS.items()
        if k in attrs and not isinstance(attrs[k], t)
    ]
    if not isinstance(attrs.get("title"), str) or not attrs["title"]:
        problems.append("no title")
    if problems:
        return problems
    json.loads(attrs["optionsJSON"])
    json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
    refresh = attrs.get("refreshInterval", {"pause": True, "value": 0})
    if not isinstance(refresh.get("pause"), bool) or not isinstance(refresh.get("value"), int):
        problems.append("refreshInterval needs pause (bool) and value (number)")
    refs = {r["name"]: r for r in board["references"]}
    used: set[str] = set()
    cells: set[tuple[int, int]] = set()
    indexes: set[str] = set()
    for panel in json.loads(attrs["panelsJSON"]):
        grid, index = panel["gridData"], panel["panelIndex"]
        if not all(isinstance(grid.get(k), int) for k in "xywh") or not isinstance(grid.get("i"), str):
            problems.append(f"panel {index}: gridData needs x, y, w, h numbers and i a string")
            continue
        if grid["i"] != index or index in indexes:
            problems.append(f"panel {index}: gridData.i {grid['i']!r} is not its unique panelIndex")
        indexes.add(index)
        if (
            grid["x"] < 0
            or grid["y"] < 0
            or grid["w"] < 1
            or grid["h"] < 1
            or grid["x"] + grid["w"] > GRID_COLUMNS
        ):
            problems.append(f"panel {index}: {grid} is outside the {GRID_COLUMNS}-column grid")
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        if mine & cells:
            problems.append(f"panel {index} overlaps another panel")
        cells |= mine
        name = f"{index}:{panel.get('panelRefName')}"
        if panel.get("panelRefName") != f"panel_{index}" or name not in refs:
            problems.append(f"panel {index}: no reference named {name!r}")
        elif refs[name]["type"] != panel["type"]:
            problems.append(
                f"panel {index}: its reference is a {refs[name]['type']}, the panel a {panel['type']}"
            )
        used.add(name)
    problems += [f"reference {n!r} is used by no panel" for n in refs if n not in used]
    return problems
