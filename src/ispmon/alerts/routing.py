"""Routing checks: which channels rules and policies page, and whether those channels exist.

Pure functions over rules, policies and channel names, shared by the service (which refuses a
rule that would page a channel nobody defined, and a channel deletion that would leave a rule,
a policy or the default route paging nothing) and usable by the config loader for the same
checks on the file. Every message names where the channel is named (``channels[1]``,
``steps[2].channels[0]``), so the operator knows what to change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.rules import AlertRule


def channel_users(
    name: str,
    rules: Iterable[AlertRule],
    policies: Mapping[str, EscalationPolicy],
    default_channels: Collection[str],
) -> list[str]:
    """Who pages channel `name`: rules, escalation policies and the default route (through
    ALERT_NOTIFICATION_CHANNELS), each with where it names the channel."""
    users = [
        f"alert rule {rule.id!r} (channels[{i}])"
        for rule in rules
        for i, channel in enumerate(rule.channels or [])
        if channel == name
    ]
    users += [
        f"escalation policy {policy.id!r} (steps[{j}].channels[{k}])"
        for policy in policies.values()
        for j, step in enumerate(policy.steps)
        for k, channel in enumerate(step.channels)
        if channel == name
    ]
    if name in default_channels:
        users.append("the default route (ALERT_NOTIFICATION_CHANNELS)")
    return users


def undefined_channel_errors(
    rule: AlertRule, policies: Mapping[str, EscalationPolicy], defined: Collection[str]
) -> list[dict[str, str]]:
    """One error per channel the rule would page that is not in `defined`: ``channels[i]`` for
    its own, ``escalation`` for its policy's (the rule names the policy, not the steps). A rule
    naming no channels pages the default ones, which are checked at start instead (a fresh
    install's "email" must not stop anything)."""
    known = ", ".join(sorted(defined)) or "none is defined"
    errors = [
        {"field": f"channels[{i}]", "message": f"no channel {name!r} ({known})"}
        for i, name in enumerate(rule.channels or [])
        if name not in defined
    ]
    policy = policies.get(rule.escalation) if rule.escalation is not None else None
    if policy is not None:
        errors += [
            {
                "field": "escalation",
                "message": f"escalation policy {policy.id!r} pages channel {name!r} "
                f"(steps[{j}].channels[{k}]), which is not defined ({known})",
            }
            for j, step in enumerate(policy.steps)
            for k, name in enumerate(step.channels)
            if name not in defined
        ]
    return errors
