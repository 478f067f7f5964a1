"""What the services return: typed objects for Python callers, `to_dict()` for the API's JSON.

A Python user writes `endpoint.id` and `status.status.value` (the seed's examples); the REST API
and the CLI serialise the same objects with `to_dict()`, so every way in sees one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ispmon.availability.endpoints import EndpointSpec
from ispmon.availability.redaction import public_check
from ispmon.models import ErrorKind, ProbeResult, Protocol, Status


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A stored endpoint: its validated definition and the row's bookkeeping.

    Every field of the definition reads as an attribute (`endpoint.url`, `endpoint.timeout`,
    `endpoint.headers`, ...), with its real value: a Python caller has the database anyway.
    `to_dict()` is what the API shows, with secrets redacted.
    """

    spec: EndpointSpec
    source: str  # "api" or "config" (owned by the config file)
    created_at: datetime
    updated_at: datetime
    # The monitor's view, known only in the daemon; None for a Python user or the CLI.
    current_status: Status | None = None
    # spec.public_dict(), when the caller has it already (services/spec_cache.py); shared: to_dict copies it.
    public: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def protocol(self) -> Protocol:
        return self.spec.protocol

    @property
    def url(self) -> str:
        return self.spec.url

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the view itself lacks: the rest of the definition's fields.
        if name in EndpointSpec.model_fields:
            return getattr(self.spec, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The endpoint as the API returns it (definition with secrets redacted, plus bookkeeping)."""
        if self.public is not None:
            # A copy down to the values' own lists and dicts (tags, headers): the cache's stays intact.
            out = dict(self.public)
            for key, value in out.items():
                if type(value) is dict or type(value) is list:
                    out[key] = value.copy()
        else:
            out = self.spec.public_dict()
        out["source"] = self.source
        out["created_at"] = self.created_at.isoformat()
        out["updated_at"] = self.updated_at.isoformat()
        if self.current_status is not None:
            out["current_status"] = self.current_status.value
        return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one endpoint, as run and recorded by `AvailabilityService.check_service`."""

    endpoint_id: str
    checked_at: datetime
    status: Status
    response_time_ms: float | None = None  # None when nothing answered (timeout, refused)
    error_kind: ErrorKind | None = None
    error: str | None = None
    attempts: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_probe(cls, endpoint_id: str, checked_at: datetime, result: ProbeResult) -> CheckResult:
        return cls(
            endpoint_id=endpoint_id,
            checked_at=checked_at,
            status=result.status,
            response_time_ms=result.response_time_ms,
            error_kind=result.error_kind,
            error=result.error,
            attempts=result.attempts,
            details=result.details,
        )

    @property
    def response_time(self) -> float | None:
        """The seed's name: milliseconds, like `response_time_ms`."""
        return self.response_time_ms

    def to_dict(self) -> dict[str, Any]:
        """The result as the API returns it (a URL quoted in the error or details redacted)."""
        return public_check(
            {
                "checked_at": self.checked_at.isoformat(),
                "status": self.status.value,
                "response_time_ms": self.response_time_ms,
                "error_kind": self.error_kind.value if self.error_kind is not None else None,
                "error": self.error,
                "attempts": self.attempts,
                "details": self.details,
                "endpoint_id": self.endpoint_id,
            }
        )
