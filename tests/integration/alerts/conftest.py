"""Fixtures shared by the alert delivery tests: the loopback webhook receiver and SMTP server."""

from tests.integration.alerts.test_alert_delivery import receiver, smtp  # noqa: F401  (re-exported fixtures)
