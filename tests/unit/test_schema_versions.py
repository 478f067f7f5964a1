"""schema.sql's version rows: one per version, 1..latest, each written idempotently.

The file is applied in full at every start (store/db.py migrate): a version row without
``ON CONFLICT (version) DO NOTHING`` fails every start after the first, and merges of branches
that each added a version have dropped that line more than once.
"""

from __future__ import annotations

import re
from pathlib import Path

SCHEMA = (Path(__file__).resolve().parents[2] / "src" / "ispmon" / "schema.sql").read_text(encoding="utf-8")
ROW = re.compile(
    r"INSERT INTO schema_version \(version, description\)\s*VALUES \((\d+), '(?:[^']|'')*'\)\s*(ON CONFLICT)?"
)


def test_every_version_row_is_idempotent_and_versions_are_contiguous() -> None:
    rows = ROW.findall(SCHEMA)
    assert len(rows) == SCHEMA.count("INSERT INTO schema_version"), "a version row the pattern does not read"
    missing = [version for version, conflict in rows if not conflict]
    assert not missing, f"version rows without ON CONFLICT (version) DO NOTHING: {missing}"
    versions = sorted(int(version) for version, _ in rows)
    assert versions == list(range(1, len(versions) + 1)), versions
