"""Flow rules (kind `flow`): validated at load time, every error naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from ispmon.alerts.config import load_alert_config
from ispmon.alerts.rules import AlertRule
from ispmon.errors import ConfigError

BASE: dict[str, Any] = {"id": "f", "kind": "flow", "metric": "to_bps", "above": 1e9}


def test_a_flow_rule_takes_customers_and_prefixes_in_canonical_form() -> None:
    rule = AlertRule.model_validate(
        {**BASE, "customers": ["c-a"], "prefixes": ["10.9.0.0/16", "2001:DB8::/48"]}
    )
    assert rule.prefixes == ["10.9.0.0/16", "2001:db8::/48"]
    assert (rule.for_checks, rule.clear_checks, rule.below) == (1, 1, None)
    # Dumped by the API and read back, it is the same rule.
    assert AlertRule.model_validate(rule.model_dump()) == rule
    every = AlertRule.model_validate({**BASE, "metric": "unknown_exporter_pps", "above": 100})
    assert every.customers == [] and every.prefixes == []


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ({"metric": "bps"}, "alert_rules[0].metric", "a flow rule watches one of to_bps, from_bps"),
        ({"above": None}, "alert_rules[0].above", "a flow rule needs the rate it fires above"),
        ({"above": None, "below": 5}, "alert_rules[0].below", "fires above a rate"),
        ({"above": -1}, "alert_rules[0].above", "a rate, 0 or more"),
        ({"prefixes": ["10.9.0.0/16", "10.9.0.1/32"]}, "alert_rules[0].prefixes[1]", "at most /24 for IPv4"),
        ({"prefixes": ["2001:db8::/64"]}, "alert_rules[0].prefixes[0]", "at most /48 for IPv6"),
        ({"prefixes": ["10.9.0.1/16"]}, "alert_rules[0].prefixes[0]", "has host bits set"),
        ({"prefixes": ["nowhere"]}, "alert_rules[0].prefixes[0]", "does not appear to be"),
        ({"prefixes": ["10.9.0.0/16", "10.9.0.0/16"]}, "alert_rules[0].prefixes[1]", "listed twice"),
        ({"devices": ["edge-1"]}, "alert_rules[0].devices", "selects customers or prefixes"),
        ({"tags": ["core"]}, "alert_rules[0].tags", "selects customers or prefixes"),
        ({"metric": "unknown_exporter_pps", "customers": ["c-a"]}, "alert_rules[0].customers", "no selector"),
        ({"min_severity": "major"}, "alert_rules[0].min_severity", "only applies to outage rules"),
    ],
)
def test_a_bad_flow_rule_in_the_file_names_its_key(extra: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_alert_config({}, [{k: v for k, v in {**BASE, **extra}.items() if v is not None}], [])
    text = str(caught.value)
    assert f"{key}: " in text and message in text, text


def test_prefixes_only_on_flow_rules() -> None:
    for body in (
        {"id": "t", "kind": "threshold", "metric": "rtt_avg_ms", "above": 5, "prefixes": ["10.0.0.0/8"]},
        {"id": "o", "kind": "outage", "prefixes": ["10.0.0.0/8"]},
        {"id": "q", "kind": "quota", "prefixes": ["10.0.0.0/8"]},
    ):
        with pytest.raises(ConfigError, match=r"alert_rules\[0\]\.prefixes: "):
            load_alert_config({}, [body], [])
