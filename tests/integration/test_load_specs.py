"""The daemon's start: a stored endpoint that no longer validates is skipped, and logged without its secrets."""

from __future__ import annotations

from structlog.testing import capture_logs

from ispmon.availability.endpoints import build_endpoint
from ispmon.config import Settings
from ispmon.daemon import load_specs
from ispmon.store.database import Database


async def test_an_invalid_stored_row_is_logged_without_its_secrets(db_dsn: str) -> None:
    db = await Database.connect(db_dsn, max_size=2)
    try:
        await db.endpoints.upsert(build_endpoint({"id": "ok", "name": "ok", "url": "http://127.0.0.1:9/"}))
        bad = build_endpoint({"id": "bad", "name": "bad", "url": "http://127.0.0.1:9/"})
        await db.endpoints.upsert(bad)
        # As an older version might have stored it: a header value no longer accepted, beside a secret.
        spec = {**bad.stored_dict(), "headers": {"X-Auth": "Leak-13-secret", "X-Bad": "a\r\nb"}}
        await db.pool.execute("UPDATE endpoints SET spec = $1 WHERE id = 'bad'", spec)
        with capture_logs() as logs:
            specs = await load_specs(db, Settings())
    finally:
        await db.close()
    assert [s.id for s in specs] == ["ok"]
    (entry,) = [e for e in logs if e["event"] == "endpoint_invalid_in_database"]
    assert entry["endpoint_id"] == "bad" and "headers" in entry["error"]
    assert "Leak-13-secret" not in str(logs)
