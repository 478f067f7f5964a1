"""Sending one message to one channel target: the `Notifier` interface and its apprise implementation.

The sender owns retries, backoff and rate limits; a notifier makes exactly one attempt and reports
the outcome as ``None`` (accepted) or an error text that is already free of credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import apprise

from ispmon.alerts.channels import ChannelTarget, redact_secrets_in

MAX_ERROR_CHARS = 500


class Notifier(Protocol):
    async def send(self, target: ChannelTarget, title: str, body: str) -> str | None:
        """None when the target accepted the message, else a redacted error text."""
        ...


class AppriseNotifier:
    """One apprise attempt per call, bounded by `timeout` seconds.

    `customize` is called with each freshly built apprise plugin before it sends: the place for
    per-deployment tweaks apprise's URLs cannot express (e.g. a Slack or Twilio API base URL on a
    private relay; the tests use it to point those plugins at a loopback receiver).
    """

    def __init__(self, timeout: float = 30.0, *, customize: Callable[[Any], None] | None = None) -> None:
        self.timeout = timeout
        self.customize = customize
        # In-memory persistent store: apprise must not write cache files next to our process.
        self._asset = apprise.AppriseAsset(storage_mode="memory")

    async def send(self, target: ChannelTarget, title: str, body: str) -> str | None:
        try:
            return await asyncio.wait_for(self._send(target, title, body), self.timeout + 5)
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:  # a plugin bug is a failed delivery, not a dead sender
            return _clip(redact_secrets_in(f"{type(exc).__name__}: {exc}", [target]))

    async def _send(self, target: ChannelTarget, title: str, body: str) -> str | None:
        plugin = apprise.Apprise.instantiate(target.url, asset=self._asset)
        if plugin is None:
            return f"not a valid apprise URL ({target.redacted})"
        # Our sender retries with backoff and remembers accepted targets; apprise must not retry
        # on its own (?retry=N in a URL would multiply the attempts and stall the sender).
        plugin.retry = 0
        if self.customize is not None:
            self.customize(plugin)
        sender = apprise.Apprise(asset=self._asset)
        sender.add(plugin)
        # apprise reports failure only as False plus log records. Its result object collects the
        # records of this call (a contextvar-scoped capture, so concurrent sends in one event loop
        # keep their own texts); the call-level `timeout` stops waiting for a stuck send.
        result = await sender.async_notify(body=body, title=title, timeout=self.timeout)
        try:
            if result:
                return None
            messages = [e.message for e in result.logs() if _level(e.level) >= logging.WARNING]
            text = "; ".join(dict.fromkeys(messages)) or f"delivery failed ({result.status.name.lower()})"
            return _clip(redact_secrets_in(text, [target]))
        finally:
            result.close()


def _level(name: str) -> int:
    number = logging.getLevelName(name)
    return number if isinstance(number, int) else logging.WARNING


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
