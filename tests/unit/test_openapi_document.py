"""The OpenAPI document states the rules the server enforces (built from the route table, no server).

Each assertion is a rule a client could only learn from a 4xx before: id patterns, bigint bounds,
reserved ids, the url/urls choice of a channel, `until` after `since`, the parser's 414/431.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from ispmon.alerts.rules import AlertRule
from ispmon.api.app import ROUTES
from ispmon.api.openapi import build_document
from ispmon.availability.maintenance import MaintenanceWindowSpec

DOC = build_document(ROUTES)
OPERATIONS = [(path, method, op) for path, item in DOC["paths"].items() for method, op in item.items()]


def _path_params(op: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in op.get("parameters", []) if p["in"] == "path"]


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_every_operation_documents_its_path_bounds_and_the_parser_rejections(
    path: str, method: str, op: dict[str, Any]
) -> None:
    assert {"414", "431", "500"} <= set(op["responses"])
    for param in _path_params(op):
        schema = param["schema"]
        if schema["type"] == "integer":
            assert (schema["minimum"], schema["maximum"]) == (1, 2**63 - 1)
        else:
            assert re.fullmatch(schema["pattern"], "core-1") and not re.fullmatch(schema["pattern"], "Core/1")
    names = {p["name"]: p for p in op.get("parameters", [])}
    if "since" in names and "until" in names:
        assert "after since" in names["until"]["description"]


def test_no_static_path_is_also_described_by_a_parametrised_one() -> None:
    """/maintenance/active vs /maintenance/{window_id}: the id pattern excludes "active"."""
    for path, item in DOC["paths"].items():
        if "{" in path:
            continue
        for other, other_item in DOC["paths"].items():
            segments, other_segments = path.split("/"), other.split("/")
            if "{" not in other or len(segments) != len(other_segments):
                continue
            params = {p["name"]: p["schema"] for op in other_item.values() for p in _path_params(op)}
            overlaps = True
            for seg, pattern_seg in zip(segments, other_segments, strict=True):
                if pattern_seg.startswith("{"):
                    schema = params[pattern_seg[1:-1]]
                    if schema["type"] == "integer":
                        overlaps = overlaps and seg.isdigit()
                    else:
                        overlaps = overlaps and re.fullmatch(schema["pattern"], seg) is not None
                else:
                    overlaps = overlaps and seg == pattern_seg
            shared = set(item) & set(other_item)
            assert not (overlaps and shared), f"{path} is also {other} for {sorted(shared)}"


def test_body_ids_carry_the_slug_pattern_and_reserved_ids_are_excluded() -> None:
    schemas = DOC["components"]["schemas"]
    endpoint = schemas["EndpointSpec"]["properties"]
    for field in ("id", "parent"):
        assert re.fullmatch(endpoint[field]["pattern"], "edge-1")
        assert not re.fullmatch(endpoint[field]["pattern"], "Edge 1")
    window = schemas["MaintenanceWindowSpec"]["properties"]
    assert not re.fullmatch(window["id"]["pattern"], "active") and re.fullmatch(
        window["id"]["pattern"], "active-1"
    )
    assert window["endpoint_ids"]["items"]["pattern"]
    rule = schemas["AlertRule"]["properties"]
    assert not re.fullmatch(rule["id"]["pattern"], "default") and re.fullmatch(
        rule["id"]["pattern"], "defaults"
    )
    assert rule["endpoints"]["items"]["pattern"]
    # ...and the validators agree with the document.
    with pytest.raises(ValueError, match="reserved"):
        MaintenanceWindowSpec.model_validate(
            {
                "id": "active",
                "name": "w",
                "starts_at": "2030-01-01T00:00:00Z",
                "ends_at": "2030-01-02T00:00:00Z",
                "all_endpoints": True,
            }
        )
    assert AlertRule.model_json_schema()["properties"]["id"]["pattern"] == rule["id"]["pattern"]


def test_a_channel_is_url_or_urls_never_both_never_null() -> None:
    channel = DOC["components"]["schemas"]["ChannelBody"]
    assert channel["oneOf"] == [{"required": ["url"]}, {"required": ["urls"]}]
    assert channel["properties"]["url"]["type"] == "string" and "default" not in channel["properties"]["url"]
    assert channel["properties"]["urls"]["type"] == "array" and channel["properties"]["urls"]["minItems"] == 1
    assert re.fullmatch(channel["properties"]["name"]["pattern"], "ops-pager")


def _success_schema(op: dict[str, Any]) -> dict[str, Any]:
    code = next(c for c in op["responses"] if c.startswith("2"))
    schema = op["responses"][code]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize(
    ("path", "method", "item"),
    [
        ("/services/", "get", "Endpoint"),
        ("/maintenance/", "get", "MaintenanceWindow"),
        ("/maintenance/active", "get", "MaintenanceWindow"),
        ("/channels/", "get", "Channel"),
        ("/alert-rules/", "get", "AlertRuleView"),
        ("/devices/", "get", "Device"),
        ("/customers/", "get", "Customer"),
        ("/nas/", "get", "Nas"),
    ],
)
def test_a_list_documents_its_exact_envelope_and_its_items(path: str, method: str, item: str) -> None:
    schema = _success_schema(DOC["paths"][path][method])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["items"]["items"] == {"$ref": f"#/components/schemas/{item}"}
    described = DOC["components"]["schemas"][item]
    assert described["required"] and described["additionalProperties"] is False
    if "limit" in schema["properties"]:
        assert set(schema["required"]) == {"items", "count", "limit", "offset", "next_after"}
    else:
        assert set(schema["required"]) == {"items", "count"}


def test_an_endpoint_answer_requires_what_every_protocol_has_and_allows_what_applies() -> None:
    endpoint = DOC["components"]["schemas"]["Endpoint"]
    assert {"id", "url", "protocol", "source", "created_at", "updated_at"} <= set(endpoint["required"])
    # Fields of one protocol are left out of another's answer, so they are not required.
    assert "headers" in endpoint["properties"] and "headers" not in endpoint["required"]
    # Redacted values replace secrets: no length bound of the definition applies to them.
    assert "maxLength" not in endpoint["properties"]["url"]
    one = "/services/{endpoint_id}"
    for path, method, code in [(one, "get", "200"), ("/services/", "post", "201"), (one, "put", "200")]:
        answer = DOC["paths"][path][method]["responses"][code]["content"]["application/json"]
        assert answer["schema"] == {"$ref": "#/components/schemas/Endpoint"}
    check = _success_schema(DOC["paths"]["/services/{endpoint_id}/check"]["post"])
    assert check["properties"]["response_time_ms"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert _success_schema(DOC["paths"]["/livez"]["get"])["required"] == ["status", "version"]


def test_each_titled_response_schema_is_the_component_of_its_name() -> None:
    """A route's titled schema is listed under its title beside the pydantic models' `$defs`: a
    title that is also a model's name would replace one of the two for every route using it."""
    components = DOC["components"]["schemas"]
    for route in ROUTES:
        if route.response_schema is None:
            continue
        for name, model in route.response_schema.get("$defs", {}).items():
            assert components[name] == model, f"{route.method} {route.path}: {name}"
        if isinstance(route.response_schema.get("title"), str):
            declared = {k: v for k, v in route.response_schema.items() if k != "$defs"}
            assert components[declared["title"]] == declared, f"{route.method} {route.path}"
