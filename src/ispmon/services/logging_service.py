"""LoggingService: the seed's logging entry point (`LoggingService().info(msg, {...})`) on structlog."""

from __future__ import annotations

from typing import Any

import structlog


class LoggingService:
    def __init__(self, component: str = "ispmon") -> None:
        self._log = structlog.get_logger(component)

    def debug(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.debug(message, **(context or {}))

    def info(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.info(message, **(context or {}))

    def warning(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.warning(message, **(context or {}))

    def error(self, message: str, context: dict[str, Any] | None = None) -> None:
        self._log.error(message, **(context or {}))
