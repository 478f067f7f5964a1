"""Endpoint definitions as the monitor keeps them for the daemon's life: one slotted object each.

A validated `EndpointSpec` (pydantic) costs about 1.1 KB per endpoint in its instance dict alone,
plus a list, a dict and a list for `tags`, `headers` and `expected_answers` even when empty; with
10,000 idle endpoints that was most of the daemon's memory per endpoint (bench/idle_rss.py). The
monitor, the scheduler, the probes and the alert engine only read attributes, so what they hold
is a `CompactSpec`: the same attribute names and values (plus the parsed `target`, the compiled
`pattern` and the `payload` bytes), in slots, with values many endpoints have alike (defaults,
intervals, enums, tags, targets, compiled patterns) shared between them.

Read-only: lists become tuples and `headers` a read-only mapping. `stored_dict()` is computed from
the slots and equals the spec's; `definition()` validates it again into an `EndpointSpec` for the
rare reader that needs the model itself (`public_dict()` goes through it).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any

from ispmon.availability.endpoints import EndpointSpec, Target, build_endpoint
from ispmon.models import Criticality, Protocol

_FIELDS: tuple[str, ...] = tuple(EndpointSpec.model_fields)
_EXTRAS = ("target", "pattern", "payload")
# Unique per endpoint as a rule: sharing them would only grow the table below.
_UNSHARED = frozenset({"id", "name", "url", "description", "body", "send", "send_hex"})
_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})


def _default(name: str) -> Any:
    info = EndpointSpec.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.is_required() else info.default


# field -> its default as the stored form compares it (a missing key means the field is required).
_DEFAULTS: dict[str, Any] = {
    n: _default(n) for n in _FIELDS if not EndpointSpec.model_fields[n].is_required()
}

# Values shared between endpoints, keyed by (type, value) so that 1, 1.0 and True stay apart.
# Bounded: past this many distinct values, new ones are kept per endpoint (correct, just larger).
MAX_SHARED = 50_000
_shared: dict[tuple[type, Any], Any] = {}


def _share(value: Any) -> Any:
    try:
        key = (type(value), value)
        found = _shared.get(key)
    except TypeError:  # unhashable (a compiled pattern may be): keep it as is
        return value
    if found is not None:
        return found
    if len(_shared) < MAX_SHARED:
        _shared[key] = value
    return value


def _frozen(name: str, value: Any) -> Any:
    if isinstance(value, list):
        value = tuple(value)
    elif isinstance(value, dict):
        return MappingProxyType(dict(value)) if value else _EMPTY_HEADERS
    elif type(value) is str and name not in _UNSHARED:
        value = sys.intern(value) if len(value) <= 64 else value
    if name in _UNSHARED or value is None:
        return value
    return _share(value)


def _json(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


class CompactSpec:
    """An endpoint definition in slots, read like the `EndpointSpec` it was made from."""

    __slots__ = (*_FIELDS, *_EXTRAS)

    # The attributes the monitor and the alert engine read (every field of EndpointSpec is a slot).
    id: str
    name: str
    url: str
    protocol: Protocol
    criticality: Criticality
    tags: tuple[str, ...]
    check_interval: float
    timeout: float
    retries: int
    is_active: bool
    canary: bool
    parent: str | None
    expected_status_code: int | tuple[int, ...] | None
    locations: tuple[str, ...] | None
    confirm_locations: int
    target: Target
    pattern: Any
    payload: bytes | None

    def __init__(self, spec: EndpointSpec) -> None:
        values = spec.__dict__  # pydantic keeps a model's field values in its instance dict
        setter = object.__setattr__
        for name in _FIELDS:
            setter(self, name, _frozen(name, values[name]))
        target = spec.target
        setter(
            self, "target", _share(Target(sys.intern(target.host), target.port, target.qname, target.rrtype))
        )
        setter(self, "pattern", _share(spec.pattern) if spec.pattern is not None else None)
        setter(self, "payload", spec.payload)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only (it may share values with others)")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EndpointSpec):
            other = CompactSpec(other)
        if not isinstance(other, CompactSpec):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CompactSpec(id={self.id!r}, protocol={self.protocol.value!r}, url=<{len(self.url)} chars>)"

    def accepts_status(self, code: int) -> bool:
        codes = self.expected_status_code
        if codes is None:
            return 200 <= code < 400
        if isinstance(codes, int):
            return code == codes
        return code in codes

    def stored_dict(self) -> dict[str, Any]:
        """What `EndpointSpec.stored_dict()` gives: every field that differs from its default."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if name in _DEFAULTS and _json(value) == _json(_DEFAULTS[name]):
                continue
            out[name] = _json(value)
        return out

    def definition(self) -> EndpointSpec:
        """The validated model, built again from the stored form (as a row read back is)."""
        return build_endpoint(self.stored_dict(), stored=True)

    def public_dict(self) -> dict[str, Any]:
        return self.definition().public_dict()


def compact(spec: EndpointSpec | CompactSpec) -> CompactSpec:
    return spec if isinstance(spec, CompactSpec) else CompactSpec(spec)
