"""LoggingService: the seed's logging entry point (`LoggingService().info(msg, {...})`) on structlog."""

from __future__ import annotations

from typing import Any

import structlog

# Keys the log pipeline writes itself (ispmon.logging): `event` is the message (structlog's own
# argument, so a context key of that name was a TypeError), and level, logger and timestamp are
# overwritten by their processors. A context key of one of these names is kept as `context_<key>`.
RESERVED_KEYS = frozenset({"event", "level", "logger", "timestamp"})


def _fields(context: dict[str, Any] | None) -> dict[str, Any]:
    if not context:
        return {}
    return {(f"context_{k}" if k in RESERVED_KEYS else k): v for k, v in context.items()}


class LoggingService:
    def __init__(self, component: str = "ispmon") -> None:
        self._log = structlog.get_logger(component)

    def debug(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.debug(message, **_fields(context))

    def info(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.info(message, **_fields(context))

    def warning(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.warning(message, **_fields(context))

    def error(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.error(message, **_fields(context))
