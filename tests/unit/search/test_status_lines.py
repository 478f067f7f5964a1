"""The status encoder's bytes are the dict builder's: `status_items` against `documents.status_doc`
serialised as the feed did before (``event.ingested`` added, then `Item.make`), for varied rows."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.search import templates
from ispmon.search.bulk import Item
from ispmon.search.documents import Observer, status_doc
from ispmon.search.status_lines import status_items

NOW = datetime(2026, 12, 2, 17, 30, 5, 123456, tzinfo=UTC)

ENDPOINTS: list[dict[str, Any]] = [
    {
        "name": "Web 1",
        "protocol": "http",
        "url": "http://127.0.0.1:8080/x",
        "criticality": "high",
        "tags": ["edge", "é"],
    },
    {"name": "DNS", "protocol": "dns", "url": "9.9.9.9:53", "criticality": "low", "tags": []},
    {
        "name": "v6",
        "protocol": "https",
        "url": 'https://[2001:db8::1]/p?q="1"',
        "criticality": "medium",
        "tags": None,
    },
    {"name": "", "protocol": "tcp", "url": "tcp://host:notaport", "criticality": None, "tags": ["a"]},
    {
        "name": 'Named "quoted"\n',
        "protocol": "icmp",
        "url": "example.net",
        "criticality": "critical",
        "tags": ["x"],
    },
    # A deleted endpoint: the LEFT JOIN gives nulls.
    {"name": None, "protocol": None, "url": None, "criticality": None, "tags": None},
]
DETAILS: list[Any] = [
    None,
    {"status_code": 200, "bytes_read": 512},
    {"status_code": True},
    {"status_code": "200"},
    {"status_code": 200.5},
    {"rtts": [1.5, 2.25], "sent": 3},
    [1, 2],
    {"status_code": -1},
]


def _status_code_text(details: Any) -> str | None:
    """What the STATUS query selects: ``details->>'status_code'`` when a JSON number or boolean."""
    if isinstance(details, dict) and isinstance(details.get("status_code"), bool | int | float):
        return json.dumps(details["status_code"])
    return None


def _rows() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(row for status_doc, row for status_items) pairs crossing the interesting values."""
    out = []
    statuses = ["up", "down", "degraded", "maintenance", "unknown", 'odd"one']
    rts = [None, 0.0, 12.5, 10.300000190734863, 4999.9]
    errors = [
        (None, None),
        ("no answer within 5 s", "timeout"),
        ("", "refused"),
        ("tab\tand é", None),
        (None, "dns"),
    ]
    times = [NOW, NOW.replace(microsecond=0), NOW - timedelta(days=1, seconds=3), NOW + timedelta(hours=7)]
    combos = itertools.product(range(len(ENDPOINTS)), statuses, rts, errors, times, DETAILS)
    for n, (e, status, rt, (error, kind), at, details) in enumerate(combos):
        if n % 7:  # a seventh of the product still crosses every value with every other
            continue
        ep = ENDPOINTS[e]
        common = {
            "id": 10_000 + n,
            "endpoint_id": f"ep-{e}" if e != 4 else 'ep"4\\',
            "checked_at": at,
            "status": status,
            "response_time_ms": rt,
            "error_kind": kind,
            "error": error,
            "attempts": 1 + n % 3,
            **ep,
        }
        out.append(({**common, "details": details}, {**common, "status_code": _status_code_text(details)}))
    return out


def _reference(row: dict[str, Any], observer: Observer, prefix: str, now: datetime) -> Item:
    """How the feed made a status item before the encoder (sync._docs with status_doc)."""
    at, doc_id, doc = status_doc(row, observer)
    doc["event"] = {**doc.get("event", {}), "ingested": now.isoformat()}
    return Item.make(templates.index_name(prefix, "service_status", at), doc_id, doc)


@pytest.mark.parametrize(
    "observer",
    [Observer("probe-1"), Observer("probe-2", "Paris"), Observer("probe-3", "Lyon", (45.76, 4.83))],
)
def test_same_bytes_as_the_dict_builder(observer: Observer) -> None:
    pairs = _rows()
    assert len(pairs) > 1000
    got = status_items([new for _, new in pairs], observer, "isp", NOW)
    want = [_reference(old, observer, "isp", NOW) for old, _ in pairs]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.index, g.doc_id) == (w.index, w.doc_id)
        assert g.line == w.line, w.line.decode()


def test_the_values_that_vary_reach_the_document() -> None:
    """Not only equal to the reference: the reference's fields are there (a guard on both)."""
    old, new = next((o, n) for o, n in _rows() if o["error"] and o["response_time_ms"] and o["details"])
    (item,) = status_items([new], Observer("probe-1"), "isp", NOW)
    action, doc = (json.loads(line) for line in item.line.decode().splitlines())
    assert action == {"index": {"_index": item.index, "_id": str(old["id"])}}
    assert item.index == "isp-service-status-" + old["checked_at"].strftime("%Y.%m.%d")
    assert doc["ispmon"]["row_id"] == str(old["id"]) and doc["error"]["message"] == old["error"]
    assert doc["monitor"]["duration"]["us"] == int(old["response_time_ms"] * 1000)
    assert doc["monitor"]["check_group"] == f"{old['endpoint_id']}-{old['id']}"
    assert doc["event"] == {"ingested": NOW.isoformat()}
    assert item.source == doc


def test_http_status_code_only_when_an_integer_or_boolean() -> None:
    base = _rows()[0][1]
    rows = [{**base, "status_code": text} for text in ("200", "true", "200.5", "-1", None)]
    docs = [json.loads(i.line.splitlines()[1]) for i in status_items(rows, Observer("p"), "isp", NOW)]
    assert [d.get("http", {}).get("response", {}).get("status_code") for d in docs] == [
        200,
        True,
        None,
        -1,
        None,
    ]
