"""Quota rules: a threshold on the customer's quota_percent, selecting customers only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ispmon.alerts.rules import QUOTA_METRIC, AlertRule


def test_a_quota_rule_watches_quota_percent_above_100_by_default() -> None:
    rule = AlertRule.model_validate({"id": "q", "kind": "quota"})
    assert (rule.metric, rule.above, rule.below, rule.for_checks) == (QUOTA_METRIC, 100.0, None, 1)
    assert rule.matches_customer("anyone")
    chosen = AlertRule.model_validate({"id": "q", "kind": "quota", "above": 80, "customers": ["carol"]})
    assert chosen.matches_customer("carol") and not chosen.matches_customer("dave")
    assert not AlertRule.model_validate({"id": "q", "kind": "quota", "enabled": False}).matches_customer("carol")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"devices": ["edge-1"]}, "devices"),
        ({"endpoints": ["web-1"]}, "endpoints"),
        ({"metric": "rtt_avg_ms"}, "metric"),
        ({"below": 10}, "below"),
        ({"above": 0}, "above"),
        ({"above": 5000}, "above"),
    ],
)
def test_a_quota_rule_refuses_what_does_not_apply_naming_the_field(extra: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        AlertRule.model_validate({"id": "q", "kind": "quota", **extra})


def test_customers_only_on_quota_rules() -> None:
    for kind in ("threshold", "outage"):
        body = {"id": "t", "kind": kind, "customers": ["carol"]}
        if kind == "threshold":
            body |= {"metric": "rtt_avg_ms", "above": 5}
        with pytest.raises(ValidationError, match="customers"):
            AlertRule.model_validate(body)
