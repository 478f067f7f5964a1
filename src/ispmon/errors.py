"""Errors that stop ispmon from starting; the CLI prints their message as one line and exits 1."""


class StartupError(Exception):
    """ispmon cannot start; the message names what to fix (a setting, a file, a server)."""
