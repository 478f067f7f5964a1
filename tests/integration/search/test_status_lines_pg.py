"""The STATUS query and the status encoder against real PostgreSQL rows: the same bytes as the
previous query (the whole ``details`` jsonb) through the dict builder, for varied rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg

from ispmon.search import templates
from ispmon.search.bulk import Item
from ispmon.search.documents import Observer, status_doc
from ispmon.search.sources import STATUS

# The query before the encoder: every column the dict builder read, details decoded by the codec.
OLD_SELECT = (
    "SELECT t.id, t.endpoint_id, t.checked_at, t.status, t.response_time_ms, t.error_kind, t.error,"
    " t.attempts, t.details, e.name, e.protocol, e.url, e.criticality, e.tags"
    " FROM status_history t LEFT JOIN endpoints e ON e.id = t.endpoint_id"
)
DETAILS = [
    None,
    {"status_code": 200, "bytes_read": 512},
    {"status_code": 404},
    {"status_code": True},
    {"status_code": "200"},
    {"status_code": 200.5},
    {"status_code": 2e2},
    {"status_code": None},
    {"rtts": [1.5, 2.25, None], "sent": 3},
    [1, 2],
    "text",
]


async def test_same_bytes_as_the_previous_query_and_dict_builder(pool: asyncpg.Pool) -> None:
    await pool.executemany(
        "INSERT INTO endpoints (id, name, protocol, url, criticality, tags, spec)"
        " VALUES ($1, $2, $3, $4, $5, $6, '{}')",
        [
            ("web-1", "Web 1", "http", "http://127.0.0.1:8080/x", "high", ["edge", "é"]),
            ("dns-1", "DNS", "dns", "9.9.9.9:53", "low", []),
            ("v6", 'Six "quoted"', "https", "https://[2001:db8::1]:8443/p", "critical", ["a", "b"]),
        ],
    )
    now = datetime.now(UTC).replace(microsecond=250)
    rows = []
    for n in range(240):
        error = [None, "no answer within 5 s", "", "é\ttab"][n % 4]
        kind = [None, "timeout", "refused"][n % 3]
        rows.append(
            (
                ["web-1", "dns-1", "v6", "gone"][n % 4],  # "gone": no endpoints row (LEFT JOIN nulls)
                now - timedelta(hours=n, microseconds=250 if n % 5 == 0 else 0),
                ["up", "down", "degraded", "maintenance", "unknown"][n % 5],
                [None, 0.0, 12.5, 10.3, 4999.9][n % 5 if n % 2 else (n // 2) % 5],
                kind,
                error,
                1 + n % 3,
                json.dumps(DETAILS[n % len(DETAILS)]) if DETAILS[n % len(DETAILS)] is not None else None,
            )
        )
    await pool.executemany(
        "INSERT INTO status_history (endpoint_id, checked_at, status, response_time_ms, error_kind, error,"
        " attempts, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)",
        rows,
    )
    observer = Observer("probe-1", "Paris")
    ingested = datetime.now(UTC)
    old_rows = await pool.fetch(OLD_SELECT + " ORDER BY t.id")
    new_rows = await pool.fetch(STATUS.select + " ORDER BY t.id")
    assert len(old_rows) == len(new_rows) == 240
    want = []
    for row in old_rows:
        at, doc_id, doc = status_doc(row, observer)
        doc["event"] = {**doc.get("event", {}), "ingested": ingested.isoformat()}
        want.append(Item.make(templates.index_name("isp", "service_status", at), doc_id, doc))
    assert STATUS.to_items is not None
    got = STATUS.to_items(new_rows, observer, "isp", ingested)
    assert [(g.index, g.doc_id, g.line) for g in got] == [(w.index, w.doc_id, w.line) for w in want]
    # The HTTP status code made it through the SQL where the dict builder kept one.
    codes = {
        json.loads(g.line.splitlines()[1]).get("http", {}).get("response", {}).get("status_code") for g in got
    }
    assert codes == {None, 200, 404, True}
