"""The alerting part of the config file: ``[channels]``, ``[[alert_rules]]``, ``[[escalation_policies]]``.

Checked at load time like the rest of the file; every error names its key (``channels.email``,
``alert_rules[2].metric``, ``escalation_policies[0].steps[1].after_minutes``), and every error is
reported, not only the first. A channel that a file rule or policy step names must be defined in
the file's ``[channels]``: a typo would otherwise only show when the first page is dead-lettered.
The one exception is a name in ALERT_NOTIFICATION_CHANNELS (a fresh install's default "email"),
which may be registered through the API later: that is a warning (`AlertConfig.warnings`), and the
daemon reports at start every name that is then still defined nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ispmon.alerts.channels import Channel, ChannelError, parse_channel
from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.rules import DEFAULT_RULE_ID, AlertRule
from ispmon.errors import ConfigError
from ispmon.validation import error_list


@dataclass(frozen=True)
class AlertConfig:
    channels: list[Channel] = field(default_factory=list)
    rules: list[AlertRule] = field(default_factory=list)
    policies: dict[str, EscalationPolicy] = field(default_factory=dict)
    # Problems that do not stop ispmon (a default channel the file does not define), one per line.
    warnings: list[str] = field(default_factory=list)


def _first_per_field(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """One error per key: a union field (int | list[int]) fails once per member, which says nothing more."""
    seen: set[str] = set()
    out = []
    for err in errors:
        if err["field"] not in seen:
            seen.add(err["field"])
            out.append(err)
    return out


class _ChannelRefs:
    """Checks that the channel names rules and policy steps use are defined in the file."""

    def __init__(
        self, defined: Iterable[str], default_channels: Iterable[str], where: str, errors: list[str]
    ) -> None:
        self.defined = set(defined)
        self.default_channels = set(default_channels)
        self.where = where
        self.errors = errors  # shared with the caller, so errors stay in file order
        self.warned: dict[str, str] = {}  # name -> the first key that used it

    def check(self, key: str, names: list[str]) -> None:
        for j, name in enumerate(names):
            if name in self.defined:
                continue
            if name in self.default_channels:
                self.warned.setdefault(name, f"{key}[{j}]")
                continue
            known = ", ".join(sorted(self.defined)) or "none declared"
            self.errors.append(f"{self.where}{key}[{j}]: no channel {name!r} in [channels] ({known})")

    def warnings(self) -> list[str]:
        out = []
        for name in sorted(self.default_channels - self.defined):
            used = f" (used by {self.warned[name]})" if name in self.warned else ""
            out.append(
                f"{self.where}ALERT_NOTIFICATION_CHANNELS: channel {name!r} is not defined in [channels]{used};"
                " unless it is registered through the API (POST /channels/), its notifications are dead-lettered"
            )
        return out


def load_alert_config(
    channels: dict[str, Any],
    rules: list[dict[str, Any]],
    policies: list[dict[str, Any]],
    where: str = "",
    default_channels: Iterable[str] = (),
) -> AlertConfig:
    """Validate the file's alerting tables; raises one ConfigError that lists every problem.

    `default_channels` (ALERT_NOTIFICATION_CHANNELS) may be named without being defined here.
    """
    errors: list[str] = []
    parsed_channels: list[Channel] = []
    for name, urls in channels.items():
        try:
            parsed_channels.append(parse_channel(name, urls, source="config"))
        except ChannelError as exc:
            # The message names the url by position, never by its text (it holds credentials).
            errors.append(f"{where}channels.{name}: {exc}")
    # Every declared name counts as defined, valid or not: its own error is enough.
    refs = _ChannelRefs(channels, default_channels, where, errors)
    parsed_policies: dict[str, EscalationPolicy] = {}
    declared_policies: set[str] = set()
    for index, item in enumerate(policies):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            declared_policies.add(item["id"])
        try:
            policy = EscalationPolicy.model_validate(item)
        except ValidationError as exc:
            for err in _first_per_field(error_list(exc, prefix=f"escalation_policies[{index}]")):
                errors.append(f"{where}{err['field']}: {err['message']}")
            continue
        if policy.id in parsed_policies:
            errors.append(f"{where}escalation_policies[{index}].id: duplicate id {policy.id!r}")
            continue
        for k, step in enumerate(policy.steps):
            refs.check(f"escalation_policies[{index}].steps[{k}].channels", step.channels)
        parsed_policies[policy.id] = policy
    parsed_rules: list[AlertRule] = []
    seen: set[str] = set()
    for index, item in enumerate(rules):
        try:
            rule = AlertRule.model_validate(item)
        except ValidationError as exc:
            for err in _first_per_field(error_list(exc, prefix=f"alert_rules[{index}]")):
                errors.append(f"{where}{err['field']}: {err['message']}")
            continue
        if rule.id in seen:
            errors.append(f"{where}alert_rules[{index}].id: duplicate id {rule.id!r}")
            continue
        if rule.id == DEFAULT_RULE_ID:
            errors.append(
                f"{where}alert_rules[{index}].id: {DEFAULT_RULE_ID!r} is reserved for the default route"
                " (ALERT_NOTIFICATION_CHANNELS)"
            )
            continue
        seen.add(rule.id)
        # A policy that is declared but invalid has its own error; naming it is not a second one.
        if rule.escalation is not None and rule.escalation not in declared_policies:
            known = ", ".join(sorted(declared_policies)) or "none declared"
            errors.append(
                f"{where}alert_rules[{index}].escalation: no escalation policy {rule.escalation!r} ({known})"
            )
        refs.check(f"alert_rules[{index}].channels", rule.channels or [])
        parsed_rules.append(rule)
    if errors:
        raise ConfigError(errors)
    return AlertConfig(parsed_channels, parsed_rules, parsed_policies, refs.warnings())
