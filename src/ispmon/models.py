"""Core value types shared by probes, the scheduler, the state machine, storage and the API.

Nothing here does I/O. `ProbeResult` is the one thing every probe returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Protocol(StrEnum):
    """The protocol a check speaks. Its name is accepted in any case ("HTTPS", "https"); the lower
    case value is what is stored and shown."""

    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"
    UDP = "udp"
    DNS = "dns"
    ICMP = "icmp"

    @classmethod
    def _missing_(cls, value: object) -> Protocol | None:
        # Protocol(x), and pydantic's validation, end up here when x is no value as given: the
        # seed's enum spells its names upper case, and URL schemes are case-insensitive (RFC 3986).
        if isinstance(value, str):
            lowered = value.lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return None


# The seed's name for the protocol enum (`from ispmon.models import ProtocolType`): the same class.
ProtocolType = Protocol


class Status(StrEnum):
    """The status of one check, or of an endpoint (the latter may also be MAINTENANCE/UNKNOWN)."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"

    @property
    def failing(self) -> bool:
        """DOWN and DEGRADED both count toward an outage; the outage's kind is the worst seen."""
        return self is Status.DOWN or self is Status.DEGRADED


class ErrorKind(StrEnum):
    """Why a check was not UP. Classified like Beats' heartbeat reasons, so alerts can route on it."""

    TIMEOUT = "timeout"  # no answer within the timeout
    REFUSED = "refused"  # TCP RST / ICMP port unreachable
    UNREACHABLE = "unreachable"  # no route, host or network unreachable
    DNS = "dns"  # the target's host name did not resolve
    TLS = "tls"  # handshake or certificate verification failed
    CONNECTION = "connection"  # reset or closed mid-exchange, other socket errors
    PROTOCOL = "protocol"  # the peer answered with something that is not valid for the protocol
    UNEXPECTED_STATUS = "unexpected_status"  # HTTP status code not in the expected set
    PATTERN_MISMATCH = "pattern_mismatch"  # body / reply did not match expected_response_pattern
    PATTERN_TIMEOUT = "pattern_timeout"  # the regex took longer than its time limit
    UNEXPECTED_ANSWER = "unexpected_answer"  # DNS answers differ from expected_answers
    RCODE = "rcode"  # DNS response code differs from expected_rcode
    NO_REPLY = "no_reply"  # UDP: silence where a reply was required
    PACKET_LOSS = "packet_loss"  # ICMP loss above the threshold (DEGRADED); total loss is DOWN timeout
    SLOW = "slow"  # response time / RTT above the endpoint's degraded threshold
    CERT_EXPIRY = "cert_expiry"  # certificate expires within the endpoint's threshold
    PERMISSION = "permission"  # e.g. raw ICMP socket not allowed for this process
    INTERNAL = "internal"  # an exception escaped a probe: a bug in ispmon, never the target's fault


class Criticality(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Severity(StrEnum):
    """Outage severity, most severe first. Order matters: see SEVERITY_ORDER."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


SEVERITY_ORDER: tuple[Severity, ...] = (Severity.WARNING, Severity.MINOR, Severity.MAJOR, Severity.CRITICAL)


@dataclass(slots=True)
class ProbeResult:
    """What one probe attempt (or one whole check, after retries) found.

    `response_time_ms` is measured with a monotonic clock by the probe around the protocol
    exchange; it is None when nothing answered (timeout, refused before any exchange).
    """

    status: Status
    response_time_ms: float | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form, as the API, the CLI and the status snapshot show it."""
        return {
            "status": self.status.value,
            "response_time_ms": self.response_time_ms,
            "error_kind": self.error_kind.value if self.error_kind is not None else None,
            "error": self.error,
            "attempts": self.attempts,
            "details": self.details,
        }

    @classmethod
    def up(cls, response_time_ms: float | None, **details: Any) -> ProbeResult:
        return cls(Status.UP, response_time_ms, details=details)

    @classmethod
    def down(
        cls, kind: ErrorKind, error: str, response_time_ms: float | None = None, **details: Any
    ) -> ProbeResult:
        return cls(Status.DOWN, response_time_ms, kind, error, details)

    @classmethod
    def degraded(
        cls, kind: ErrorKind, error: str, response_time_ms: float | None = None, **details: Any
    ) -> ProbeResult:
        return cls(Status.DEGRADED, response_time_ms, kind, error, details)
