"""Check a real answer against what /openapi.json documents for its route.

The tests that call it give the route data that makes the fields non-empty, so a field a handler
adds, drops or changes the type of (and the document does not) fails the test.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient


def check_documented(doc: dict[str, Any], method: str, template: str, status: int, body: Any) -> None:
    """`body`, answered with `status` by `method template` (e.g. GET /sessions/{session_id}), is
    what the document `doc` says, and the document's schema for it is exact."""
    operation = doc["paths"][template][method.lower()]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    # Exact, not the loose {"type": "object"} that lets anything through: the body (or a list's
    # items; the envelope is always closed) refuses undeclared keys.
    items = schema.get("properties", {}).get("items", {}).get("items")
    text = json.dumps(items if items is not None else schema)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        text += json.dumps(doc["components"]["schemas"][name])
    assert '"additionalProperties": false' in text, f"{method} {template}: not exact: {schema}"
    # The schema's "#/components/..." references resolve against this root.
    root = {**schema, "components": doc.get("components", {})}
    validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:300]}" for e in errors
    )


async def assert_documented(client: TestClient[Any, Any], method: str, template: str, resp: ClientResponse) -> Any:
    """`check_documented` for an answer of the app behind `client`; returns the body."""
    body = await resp.json()
    doc = await (await client.get("/openapi.json")).json()
    check_documented(doc, method, template, resp.status, body)
    return body
