"""A retargeted endpoint's threshold progress is not carried over to its new target."""

from __future__ import annotations

from typing import Any

from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.rules import ThresholdState


def test_target_changed_drops_pending_threshold_counts_but_keeps_firing_ones() -> None:
    none: Any = None
    engine = AlertEngine(
        pool=none, alerts=none, notifications=none, channels=none, default_channels=[], link_base=None
    )
    firing = ThresholdState(count=3, firing=True)
    engine.thresholds = {
        ("slow", "web"): ThresholdState(count=2),
        ("loss", "web"): firing,  # stays: the new target's first value in range clears the alert
        ("slow", "dns"): ThresholdState(count=1),
    }
    engine.target_changed("web")
    assert engine.thresholds == {("loss", "web"): firing, ("slow", "dns"): ThresholdState(count=1)}
