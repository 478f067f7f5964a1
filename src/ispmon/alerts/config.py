"""The alerting part of the config file: ``[channels]``, ``[[alert_rules]]``, ``[[escalation_policies]]``.

Checked at load time like the rest of the file; every error names its key (``channels.email``,
``alert_rules[2].metric``, ``escalation_policies[0].steps[1].after_minutes``). Channel names a rule
or policy refers to are not required to be in the file: the API may register them. A name that is
defined nowhere is reported at start and its notifications are dead-lettered, visibly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ispmon.alerts.channels import Channel, ChannelError, parse_channel
from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.rules import AlertRule
from ispmon.errors import ConfigError
from ispmon.validation import error_list


@dataclass(frozen=True)
class AlertConfig:
    channels: list[Channel] = field(default_factory=list)
    rules: list[AlertRule] = field(default_factory=list)
    policies: dict[str, EscalationPolicy] = field(default_factory=dict)


def load_alert_config(
    channels: dict[str, Any], rules: list[dict[str, Any]], policies: list[dict[str, Any]], where: str = ""
) -> AlertConfig:
    parsed_channels: list[Channel] = []
    for name, urls in channels.items():
        try:
            parsed_channels.append(parse_channel(name, urls, source="config"))
        except ChannelError as exc:
            # The message names the url by position, never by its text (it holds credentials).
            raise ConfigError(f"{where}channels.{name}: {exc}") from None
    parsed_policies: dict[str, EscalationPolicy] = {}
    for index, item in enumerate(policies):
        try:
            policy = EscalationPolicy.model_validate(item)
        except ValidationError as exc:
            err = error_list(exc, prefix=f"escalation_policies[{index}]")[0]
            raise ConfigError(f"{where}{err['field']}: {err['message']}") from None
        if policy.id in parsed_policies:
            raise ConfigError(f"{where}escalation_policies[{index}].id: duplicate id {policy.id!r}")
        parsed_policies[policy.id] = policy
    parsed_rules: list[AlertRule] = []
    seen: set[str] = set()
    for index, item in enumerate(rules):
        try:
            rule = AlertRule.model_validate(item)
        except ValidationError as exc:
            err = error_list(exc, prefix=f"alert_rules[{index}]")[0]
            raise ConfigError(f"{where}{err['field']}: {err['message']}") from None
        if rule.id in seen:
            raise ConfigError(f"{where}alert_rules[{index}].id: duplicate id {rule.id!r}")
        if rule.escalation is not None and rule.escalation not in parsed_policies:
            known = ", ".join(sorted(parsed_policies)) or "none declared"
            raise ConfigError(
                f"{where}alert_rules[{index}].escalation: no escalation policy {rule.escalation!r} ({known})"
            )
        seen.add(rule.id)
        parsed_rules.append(rule)
    return AlertConfig(parsed_channels, parsed_rules, parsed_policies)
