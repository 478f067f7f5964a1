"""Errors of the process plumbing: a configuration that is invalid, and a start that cannot proceed.

They live here, below every other module, so that the config loader and the domains whose config it
validates (maintenance windows, alerting) can all raise them without importing each other.
"""


class ConfigError(Exception):
    """The configuration is invalid; the message names the key (and the file, when there is one)."""


class StartupError(Exception):
    """ispmon cannot start; the message names what to fix (a setting, a file, a server)."""
