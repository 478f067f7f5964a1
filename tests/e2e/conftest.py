"""Fixtures shared by the end-to-end tests."""

from tests.e2e.test_daemon import notify_socket  # noqa: F401  (re-exported fixture)
