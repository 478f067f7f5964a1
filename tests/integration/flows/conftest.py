"""Fixtures shared by the flow tests."""

from tests.integration.flows.test_softflowd import rig  # noqa: F401  (re-exported fixture)
