"""The alert engine's state: an open alert as held in memory, and what an outage alert's messages need.

Kept apart from the engine so that paging, rendering and the restart reconciliation can share these
types without importing the engine (which imports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class OpenAlert:
    """An open alert in memory (mirrors its row)."""

    id: int
    endpoint_id: str
    rule_id: str
    kind: str
    outage_id: int | None
    severity: str
    state: str
    started_at: datetime
    suppressed_by: str | None
    notify_from: datetime | None
    policy_id: str | None
    last_step: int
    last_reminder: int
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> OpenAlert:
        return cls(
            row["id"],
            row["endpoint_id"],
            row["rule_id"],
            row["kind"],
            row["outage_id"],
            row["severity"],
            row["state"],
            row["started_at"],
            row["suppressed_by"],
            row["notify_from"],
            row["escalation_policy"],
            row["last_step"],
            row["last_reminder"],
            dict(row["details"] or {}),
        )


def outage_details(spec: EndpointSpec, row: Any) -> dict[str, Any]:
    """What an outage alert's messages need from the outage row (None: the name only)."""
    details: dict[str, Any] = {"endpoint_name": spec.name}
    if row is not None:
        details |= {"status": row["status"], "error_kind": row["error_kind"], "error": row["error"]}
    return details
