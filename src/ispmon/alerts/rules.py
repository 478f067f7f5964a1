"""Alert rules: which outages and which measured figures alert, how badly, and to whom.

Three kinds of rule, declared in the config file or through the API:

* ``outage`` rules alert on the outage state machine's events (declared, severity escalated,
  resolved), optionally only for outages at or above ``min_severity``.
* ``threshold`` rules watch one figure of every check: ``response_time_ms`` or any numeric key of
  ``ProbeResult.details`` (``loss_percent``, ``cert_days_left``, later ``utilisation_percent``…),
  and fire when it stays above / below a limit for N consecutive checks or for D minutes. They
  clear after ``clear_checks`` consecutive in-range values (hysteresis, so a value hovering at the
  limit does not page on every check).
* ``quota`` rules are threshold rules on a customer's ``quota_percent`` (the usage domain's quota
  pass feeds it whenever the figure can have moved): one alert when a customer crosses ``above``
  per cent of the quota (default 100), cleared when a new period starts.
* ``flow`` rules are threshold rules on the flow collector's minute figures: traffic to or from a
  customer or a prefix in bit/s or packets/s, and packets/s from undeclared exporters
  (`ispmon.alerts.flow_rules` says which metrics and selectors).

Selectors: ``endpoints`` and ``tags`` are OR-ed like maintenance windows (the endpoint is listed,
or has any of the tags); both empty means every endpoint. Threshold rules also watch SNMP devices
and their interfaces (`matches_network`): ``devices`` (ids) OR ``tags`` (the device's) select
devices, ``interfaces`` (shell patterns on ifName) narrows to interfaces; their figures are the
interface samples' (``in_util_pct``, ``out_errors_ps``, ...), ``interface_down`` and
``device_unreachable`` (1 while so, 0 when not: ``above = 0`` pages on the state change).
A rule with ``devices`` or ``interfaces`` and no ``endpoints``/``tags`` watches no endpoint.
Routing: ``channels`` (None = the default set, ALERT_NOTIFICATION_CHANNELS) or ``escalation`` (a policy id), never both.

Routing has a root: an outage that no enabled outage rule matches (by endpoint, tags and
``min_severity``) goes to the default route, `default_route()`, whose id ``default`` is reserved,
and which pages ALERT_NOTIFICATION_CHANNELS. So no outage pages nobody without a trace.

`evaluate_threshold` is the pure state transition for threshold rules: no clock, no I/O.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ispmon.alerts.flow_rules import check_flow_rule, check_prefix
from ispmon.availability.endpoints import SLUG_RE, SLUG_SCHEMA
from ispmon.availability.outage_events import Event
from ispmon.models import SEVERITY_ORDER, ProbeResult, Severity
from ispmon.validation import unstorable_text

MAX_MINUTES = 7 * 24 * 60
# The id of the default route (alerts.rule_id of outages no rule matches); no rule may take it.
DEFAULT_RULE_ID = "default"
RULE_ID_PATTERN = r"^(?!default$)[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
_SLUG_MESSAGE = (
    "must be a slug: 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"
)


def _check_slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(_SLUG_MESSAGE)
    return value


# Per-item validation, so the error names the element: "endpoints[2]", "channels[0]".
Slug = Annotated[str, AfterValidator(_check_slug), Field(json_schema_extra=SLUG_SCHEMA)]
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Metric = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
FlowPrefix = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(check_prefix)]

QUOTA_METRIC = "quota_percent"

# Fields that only mean something for one kind; setting one on the other kind is an error naming it.
_THRESHOLD_ONLY = ("metric", "above", "below", "for_checks", "for_minutes")
_OUTAGE_ONLY = ("min_severity",)
# These have non-None defaults: only a value other than the default is an error, so that a rule
# dumped by the API (every field present) validates again unchanged.
_THRESHOLD_ONLY_DEFAULTED: dict[str, Any] = {
    "clear_checks": 1, "devices": [], "interfaces": [], "customers": [], "prefixes": [],
}  # fmt: skip
_OUTAGE_ONLY_DEFAULTED = {"notify_escalated": True}


class AlertRule(BaseModel):
    """One alert rule, as the config file's ``[[alert_rules]]`` tables and the API declare it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: Slug = Field(
        description="Slug id; 'default' is reserved", json_schema_extra={"pattern": RULE_ID_PATTERN}
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool = True
    kind: Literal["outage", "threshold", "quota", "flow"]
    endpoints: list[Slug] = Field(default_factory=list, max_length=10000)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    devices: list[Slug] = Field(default_factory=list, max_length=10000)
    # Quota and flow rules: the customers watched (none: every customer [with a quota]).
    customers: list[Slug] = Field(default_factory=list, max_length=100000)
    # Flow rules: prefixes watched (traffic to or from any address in them).
    prefixes: list[FlowPrefix] = Field(default_factory=list, max_length=1000)
    interfaces: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    min_severity: Severity | None = None
    notify_escalated: bool = True
    # Outage rules: resolved messages; threshold rules: "cleared" messages.
    notify_resolved: bool = True
    severity: Severity | None = None
    metric: Metric | None = None
    above: float | None = Field(default=None, allow_inf_nan=False)
    below: float | None = Field(default=None, allow_inf_nan=False)
    for_checks: int | None = Field(default=None, ge=1, le=1000)
    for_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES, allow_inf_nan=False)
    clear_checks: int = Field(default=1, ge=1, le=100)
    channels: list[Slug] | None = Field(default=None, max_length=20)
    escalation: Slug | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        bad = unstorable_text(data) if isinstance(data, dict) else None
        if bad:
            raise ValueError(f"{bad}: must not contain NUL characters or invalid UTF-8")
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> AlertRule:
        if self.kind == "outage":
            for name in _THRESHOLD_ONLY:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only applies to threshold rules")
            for name, default in _THRESHOLD_ONLY_DEFAULTED.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name}: only applies to threshold rules")
        else:
            if self.kind == "quota":
                self._check_quota()
            elif self.kind == "flow":
                check_flow_rule(self)
            elif self.customers:
                raise ValueError("customers: only applies to quota and flow rules")
            elif self.prefixes:
                raise ValueError("prefixes: only applies to flow rules")
            for name in _OUTAGE_ONLY:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only applies to outage rules")
            for name, default in _OUTAGE_ONLY_DEFAULTED.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name}: only applies to outage rules")
            if self.metric is None:
                raise ValueError("metric: required for a threshold rule (response_time_ms or a details key)")
            if self.above is None and self.below is None:
                raise ValueError("above: a threshold rule needs above or below")
            if self.above is not None and self.below is not None:
                raise ValueError("below: give above or below, not both")
            if self.for_checks is not None and self.for_minutes is not None:
                raise ValueError("for_minutes: give for_checks or for_minutes, not both")
            # The model is frozen; defaults that depend on `kind` are filled in here, once.
            if self.severity is None:
                object.__setattr__(self, "severity", Severity.MINOR)
            if self.for_checks is None and self.for_minutes is None:
                object.__setattr__(self, "for_checks", 1)
        if self.channels is not None and not self.channels:
            raise ValueError("channels: must not be empty (omit it to use the default channels)")
        if self.channels is not None and self.escalation is not None:
            raise ValueError("escalation: give channels or escalation, not both")
        return self

    def _check_quota(self) -> None:
        """A quota rule is a threshold rule on the customer's `quota_percent` (this period's use
        as a percentage of the quota), above `above` (default 100): it fires once when a customer
        crosses it and clears when a new period starts."""
        for name in ("endpoints", "tags", "devices", "interfaces", "prefixes"):
            if getattr(self, name):
                raise ValueError(f"{name}: a quota rule selects customers (customers), not {name}")
        if self.metric not in (None, QUOTA_METRIC):
            raise ValueError(f"metric: a quota rule watches {QUOTA_METRIC}")
        if self.below is not None:
            raise ValueError("below: a quota rule fires above a percentage of the quota")
        object.__setattr__(self, "metric", QUOTA_METRIC)
        if self.above is None:
            object.__setattr__(self, "above", 100.0)
        elif not 0 < self.above <= 1000:
            raise ValueError("above: a percentage of the quota, more than 0 and at most 1000")

    def matches_customer(self, customer_id: str) -> bool:
        """Whether this (enabled) quota rule watches the customer (listed, or none listed)."""
        return self.enabled and self.kind == "quota" and (not self.customers or customer_id in self.customers)

    def matches(self, endpoint_id: str, tags: Iterable[str]) -> bool:
        """Whether this (enabled) rule applies to the endpoint; a disabled rule matches nothing."""
        if not self.enabled:
            return False
        if not self.endpoints and not self.tags:
            return not self.devices and not self.interfaces
        return endpoint_id in self.endpoints or not set(self.tags).isdisjoint(tags)

    def matches_network(self, device_id: str, tags: Iterable[str], interface: str | None) -> bool:
        """Whether this (enabled) rule watches the device (`interface` None) or its interface
        named `interface`: the device is listed or has a tag (none of either: every device), and
        the interface's name matches a pattern (none: every interface; a device's own figures
        only with no pattern)."""
        if not self.enabled:
            return False
        if (self.devices or self.tags or self.endpoints) and not (
            device_id in self.devices or not set(self.tags).isdisjoint(tags)
        ):
            return False
        if not self.interfaces:
            return True
        return interface is not None and any(fnmatch.fnmatchcase(interface, p) for p in self.interfaces)

    def severity_matches(self, severity: Severity) -> bool:
        """At or above `min_severity`. Checked per event: an outage that escalates into range matches then."""
        if self.min_severity is None:
            return True
        return SEVERITY_ORDER.index(Severity(severity)) >= SEVERITY_ORDER.index(self.min_severity)

    def alert_severity(self, outage_severity: Severity | None = None) -> Severity:
        """The alert's severity: the rule's own, or (outage rules without one) the outage's."""
        if self.severity is not None:
            return self.severity
        if outage_severity is None:
            raise ValueError("an outage rule without severity needs the outage's severity")
        return Severity(outage_severity)


def default_route() -> AlertRule:
    """The routing root: the outage rule of every outage no other rule matches. It names no
    channels, so it pages ALERT_NOTIFICATION_CHANNELS."""
    return AlertRule(id=DEFAULT_RULE_ID, name="Default route: outages no rule matches", kind="outage")


def metric_value(metric: str, result: ProbeResult) -> float | None:
    """The figure a threshold rule watches, or None when this check did not yield it."""
    raw = result.response_time_ms if metric == "response_time_ms" else result.details.get(metric)
    # bool is an int subclass; True is not 1 ms. NaN/inf compare false against every limit.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class ThresholdState:
    """Per (rule, endpoint) progress. `since` is the first breaching check of the current run."""

    count: int = 0
    since: datetime | None = None
    firing: bool = False
    clear_count: int = 0
    peak: float | None = None


@dataclass(frozen=True, slots=True)
class ThresholdBreached(Event):
    """The rule fired. `since` is the first breaching check, `at` the check that made it fire."""

    kind: ClassVar[str] = "threshold_breached"
    value: float
    since: datetime
    checks: int
    peak: float
    at: datetime


@dataclass(frozen=True, slots=True)
class ThresholdCleared(Event):
    kind: ClassVar[str] = "threshold_cleared"
    time_field: ClassVar[str] = "cleared_at"
    value: float
    since: datetime
    cleared_at: datetime
    duration_seconds: float
    peak: float | None


def breaches(rule: AlertRule, value: float) -> bool:
    """Strictly beyond the limit: a value equal to it is in range."""
    if rule.above is not None:
        return value > rule.above
    return rule.below is not None and value < rule.below


def _worse(rule: AlertRule, peak: float | None, value: float) -> float:
    if peak is None:
        return value
    return max(peak, value) if rule.above is not None else min(peak, value)


def evaluate_threshold(
    rule: AlertRule, state: ThresholdState, value: float | None, now: datetime
) -> tuple[ThresholdState, ThresholdBreached | ThresholdCleared | None]:
    """Feed one check's value; returns the new state and at most one event.

    None (the check failed, the metric is missing) changes nothing: failures are the outage rules'
    business, and a gap in data must neither fire nor clear a threshold alert.
    """
    if value is None:
        return state, None
    if breaches(rule, value):
        since = state.since if state.since is not None else now
        peak = _worse(rule, state.peak, value)
        new = replace(state, count=state.count + 1, since=since, clear_count=0, peak=peak)
        if state.firing:
            return new, None
        by_checks = rule.for_checks is not None and new.count >= rule.for_checks
        by_minutes = rule.for_minutes is not None and now - since >= timedelta(minutes=rule.for_minutes)
        if by_checks or by_minutes:
            return replace(new, firing=True), ThresholdBreached(value, since, new.count, peak, now)
        return new, None
    if not state.firing:
        return (state, None) if state == ThresholdState() else (ThresholdState(), None)
    clear_count = state.clear_count + 1
    if clear_count < rule.clear_checks:
        return replace(state, clear_count=clear_count), None
    assert state.since is not None  # firing implies a breach run
    # cleared_at is the check that completed the clearing run: the alert was active until then.
    duration = (now - state.since).total_seconds()
    return ThresholdState(), ThresholdCleared(value, state.since, now, duration, state.peak)
