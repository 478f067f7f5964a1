"""Threshold-like inputs of the alert engine from the other domains: an SNMP device's or
interface's figures from one poll, a customer's quota percentage from a quota pass, and (through
`feed`) the flow collector's minute figures. Each goes through the threshold rules that select its
subject; breaches and clears are written through the engine's outbox path (`AlertEngine`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ispmon.alerts.rules import (
    QUOTA_METRIC,
    AlertRule,
    ThresholdBreached,
    ThresholdState,
    breaches,
    evaluate_threshold,
)

IDLE = ThresholdState()


class ThresholdInputs:
    """Mixed into `AlertEngine`, which provides the state and the write path declared here."""

    thresholds: dict[tuple[str, str], ThresholdState]
    _threshold_rules: tuple[AlertRule, ...]
    _quota_rules: tuple[AlertRule, ...]
    _subjects: dict[str, Any]
    _matching: dict[str, tuple[Any, tuple[AlertRule, ...]]]

    if TYPE_CHECKING:  # provided by AlertEngine; declared for type checkers only, so nothing here
        # can shadow the engine's own methods in the MRO at run time

        def _spawn(self, coro: Awaitable[None]) -> None: ...

        async def _guarded(self, what: str, op: Callable[[], Awaitable[None]]) -> None: ...

        async def _breached(self, spec: Any, rule: AlertRule, event: ThresholdBreached) -> None: ...

        async def _cleared(self, spec: Any, rule: AlertRule, event: Any) -> None: ...

    def observe_network(self, subject: Any, now: datetime, values: dict[str, float | None]) -> None:
        """Figures of an SNMP device or interface from one poll (`subject`: an
        `ispmon.alerts.network.NetSubject`), through the threshold rules that watch it."""
        if not self._threshold_rules:
            return
        self._subjects[subject.id] = subject
        cached = self._matching.get(subject.id)
        if cached is None or cached[0] != subject:
            matching = tuple(
                r
                for r in self._threshold_rules
                if r.matches_network(subject.device_id, subject.tags, subject.interface)
            )
            cached = (subject, matching)
            self._matching[subject.id] = cached
        self.feed(subject, cached[1], now, values.get)

    @property
    def quota_rules(self) -> tuple[AlertRule, ...]:
        """The enabled quota rules; a new tuple each time the rules are configured."""
        return self._quota_rules

    def observe_quota(self, subject: Any, now: datetime, percent: float) -> bool:
        """A customer's use this period as a percentage of its quota (`subject`: an
        `ispmon.alerts.network.CustomerSubject`), through the quota rules that watch it. True when
        a rule is part-way (a breach not firing yet, a clear not complete): the quota pass then
        feeds this customer again although its use did not change."""
        if not self._quota_rules:
            return False
        rules = tuple(r for r in self._quota_rules if r.matches_customer(subject.customer_id))
        self.feed(subject, rules, now, {QUOTA_METRIC: percent}.get)
        for rule in rules:
            state = self.thresholds.get((rule.id, subject.id))
            if state is not None and (not state.firing or state.clear_count):
                return True
        return False

    def feed(
        self, spec: Any, rules: tuple[AlertRule, ...], now: datetime, value_of: Callable[[str], float | None]
    ) -> None:
        """One subject's figures through the threshold-like rules given (`ispmon.flows.alerting`
        feeds flow rules this way); opening and clearing go through the outbox."""
        values: dict[str, float | None] = {}
        for rule in rules:
            metric = rule.metric or ""
            if metric not in values:
                values[metric] = value_of(metric)
            value = values[metric]
            key = (rule.id, spec.id)
            state = self.thresholds.get(key)
            if state is None:
                # Idle and in range (the common case): nothing to evaluate, nothing to keep.
                if value is None or not breaches(rule, value):
                    continue
                state = IDLE
            new_state, event = evaluate_threshold(rule, state, value, now)
            if new_state == IDLE:
                self.thresholds.pop(key, None)
            else:
                self.thresholds[key] = new_state
            if event is None:
                continue
            if isinstance(event, ThresholdBreached):
                self._spawn(
                    self._guarded("threshold_breached", lambda r=rule, e=event: self._breached(spec, r, e))
                )
            else:
                self._spawn(
                    self._guarded("threshold_cleared", lambda r=rule, e=event: self._cleared(spec, r, e))
                )
