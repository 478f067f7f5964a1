"""Endpoints as the API shows them, kept already encoded: the cost of ``GET /services/`` per row.

Profiled (bench/api.py --profile), a list request spent its CPU decoding every row's ``spec``
jsonb, building the redacted public dict again (pydantic attribute access) and JSON-encoding 50
items: ~4 ms a page, so a few hundred clients kept the event loop the monitor shares busy. An
endpoint's public JSON only changes when its row does, so here each endpoint's item is kept as
the bytes `json.dumps(Endpoint.to_dict())` gives, less the closing brace and `current_status`
(the monitor's, which changes between reads and is appended per request).

An entry is keyed by what the row says, not by who wrote it: the stored definition's text
(``spec::text``, exact for equal jsonb), ``source``, ``created_at`` and ``updated_at``. A row
changed in any way (a PUT, a DELETE and a new row with the same id, a config reload or SIGHUP,
another agent sharing the database, a hand-written UPDATE) no longer matches its entry and is
encoded again from the row, so a stale or unredacted body cannot be served; the service also
drops an entry when it writes the row itself, which only frees the memory sooner.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ispmon.models import Status

# More endpoints than this and the cache starts again empty: memory stays bounded whatever is stored.
MAX_ENTRIES = 200_000

Key = tuple[str, str, datetime, datetime]
# `to_dict` puts current_status last, so an item is its prefix plus one of these.
_STATUS_SUFFIX = {s: f', "current_status": {json.dumps(s.value)}}}'.encode() for s in Status}
_NO_STATUS = b"}"


def row_key(row: Any) -> Key:
    """What an entry is valid for: a row of `EndpointRepo.list_text` (or anything with its fields)."""
    return (row["spec_text"], row["source"], row["created_at"], row["updated_at"])


class PublicJsonCache:
    """id -> (key, encoded public item without its closing brace); counts hits and misses."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Key, bytes]] = {}
        self.hits = 0
        self.misses = 0

    def item(self, row: Any, status: Status | None, encode: Callable[[Any], dict[str, Any]]) -> bytes:
        """The JSON of `row`'s endpoint with `status` as current_status (none when None); `encode`
        makes the public dict (without current_status) when the entry is missing or stale."""
        endpoint_id = row["id"]
        key = row_key(row)
        entry = self._entries.get(endpoint_id)
        if entry is not None and entry[0] == key:
            self.hits += 1
            prefix = entry[1]
        else:
            self.misses += 1
            public = encode(row)
            # The same encoding as the API's json_response (api/errors.dumps): the values here are
            # plain JSON already (isoformat strings), so its `default` is never called.
            text = json.dumps(public, allow_nan=False)
            prefix = text[:-1].encode()
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[endpoint_id] = (key, prefix)
        return prefix + (_NO_STATUS if status is None else _STATUS_SUFFIX[status])

    def discard(self, endpoint_id: str) -> None:
        self._entries.pop(endpoint_id, None)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}

    def __len__(self) -> int:
        return len(self._entries)
