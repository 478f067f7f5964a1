"""Validated endpoint definitions, kept between reads of the same stored row.

Every read of an endpoint used to validate its stored definition again (pydantic, target parsing,
consistency checks) and dump it for the API: ~130 µs a row, 57 % of the CPU of
``GET /services/?limit=50`` (bench/api.py --profile). A stored definition only changes through a
write, so the validated spec and its public form are kept per endpoint id and reused while the
row's stored ``spec`` is equal to the one they were built from (a write, the config file or
another agent changing the row makes them stale: they are rebuilt on the next read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ispmon.availability.endpoints import EndpointSpec

# More endpoints than this and the cache starts again empty: memory stays bounded whatever is stored.
MAX_ENTRIES = 200_000


class SpecCache:
    """id -> (stored spec, validated spec, public dict). The public dict is shared between reads:
    callers copy it before changing it (`Endpoint.to_dict` does)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[dict[str, Any], EndpointSpec, dict[str, Any]]] = {}

    def get(
        self, endpoint_id: str, stored: dict[str, Any], build: Callable[[dict[str, Any]], EndpointSpec]
    ) -> tuple[EndpointSpec, dict[str, Any]]:
        """The validated spec and public dict of `stored`; `build` validates it when it is not
        cached (the caller's way of reading a stored definition; its ValidationError propagates)."""
        entry = self._entries.get(endpoint_id)
        if entry is not None and entry[0] == stored:
            return entry[1], entry[2]
        spec = build(stored)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[endpoint_id] = (stored, spec, spec.public_dict())
        return spec, self._entries[endpoint_id][2]

    def discard(self, endpoint_id: str) -> None:
        self._entries.pop(endpoint_id, None)

    def __len__(self) -> int:
        return len(self._entries)
