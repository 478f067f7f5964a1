"""Errors of the process plumbing: a configuration that is invalid, and a start that cannot proceed.

They live here, below every other module, so that the config loader and the domains whose config it
validates (maintenance windows, alerting) can all raise them without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """The configuration is invalid.

    `errors` holds every problem found, one message each, and each names its key (and the file,
    when there is one); ``str()`` joins them with "; " so a single log line still carries them all.
    Loading collects them rather than stopping at the first, so one run shows everything to fix.
    """

    def __init__(self, errors: str | Iterable[str]) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


class StartupError(Exception):
    """ispmon cannot start; the message names what to fix (a setting, a file, a server)."""
