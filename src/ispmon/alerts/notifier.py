"""Sending one message to one channel target: the `Notifier` interface and its apprise implementation.

The sender owns retries, backoff and rate limits; a notifier makes exactly one attempt and reports
the outcome as ``None`` (accepted) or an error text that is already free of credentials.

Delivery is at-least-once: a send in flight at a crash is sent again once its lease runs out. So
each attempt carries the notification's idempotency key where the channel has room for it (see
`carry_key`), the same on every attempt of one notification, for the receiver to drop a repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import apprise
from apprise.attachment.memory import AttachMemory
from apprise.plugins.custom_form import NotifyForm
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.custom_xml import NotifyXML
from apprise.plugins.email import NotifyEmail

from ispmon.alerts.channels import ChannelTarget, redact_secrets_in

MAX_ERROR_CHARS = 500
# The header of the IETF httpapi draft "The Idempotency-Key HTTP Header Field" (also what Stripe and
# many webhook receivers read); e-mail has no standard one, so the same name is used there.
KEY_HEADER = "Idempotency-Key"
# The body field of JSON, form and XML webhooks (apprise's own fields are version, title, message, type).
KEY_FIELD = "idempotency_key"


# A file sent with a message (a scheduled report): (file name, media type, content).
Attachment = tuple[str, str, bytes]


class Notifier(Protocol):
    async def send(
        self, target: ChannelTarget, title: str, body: str, *, key: str | None = None
    ) -> str | None:
        """None when the target accepted the message, else a redacted error text. `key`: the
        notification's idempotency key, carried to the receiver where the channel allows it.
        A notifier that can send files also takes ``attachment=`` (an `Attachment`); the sender
        passes it only for notifications that carry one."""
        ...


def carry_key(plugin: Any, key: str) -> bool:
    """Put `key` into what this freshly built apprise plugin sends; False if the channel has no room.

    JSON, form and XML webhooks: an `Idempotency-Key` header and an `idempotency_key` body field
    (what apprise's `+Header=` and `:field=` URL extras would add). E-mail: an `Idempotency-Key`
    header; not the Message-ID, which apprise sets afresh for every message after the custom
    headers (setting one here would give the mail two). Slack, SMS and the rest: nowhere.
    """
    if isinstance(plugin, NotifyJSON | NotifyForm | NotifyXML):
        plugin.headers = {**plugin.headers, KEY_HEADER: key}
        plugin.payload_extras = {**plugin.payload_extras, KEY_FIELD: key}
        if isinstance(plugin, NotifyXML):
            # apprise drops its XSD reference once a payload has extras: the document no longer fits it.
            plugin.xsd_url = None
        return True
    if isinstance(plugin, NotifyEmail):
        plugin.headers = {**plugin.headers, KEY_HEADER: key}
        return True
    return False


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

    async def send(
        self,
        target: ChannelTarget,
        title: str,
        body: str,
        *,
        key: str | None = None,
        attachment: Attachment | None = None,
    ) -> str | None:
        try:
            return await asyncio.wait_for(self._send(target, title, body, key, attachment), self.timeout + 5)
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:  # a plugin bug is a failed delivery, not a dead sender
            return _clip(redact_secrets_in(f"{type(exc).__name__}: {exc}", [target]))

    async def _send(
        self, target: ChannelTarget, title: str, body: str, key: str | None, attachment: Attachment | None
    ) -> str | None:
        plugin = apprise.Apprise.instantiate(target.url, asset=self._asset)
        if plugin is None:
            return f"not a valid apprise URL ({target.redacted})"
        # Our sender retries with backoff and remembers accepted targets; apprise must not retry
        # on its own (?retry=N in a URL would multiply the attempts and stall the sender).
        plugin.retry = 0
        if key is not None:
            carry_key(plugin, key)
        if self.customize is not None:
            self.customize(plugin)
        sender = apprise.Apprise(asset=self._asset)
        sender.add(plugin)
        # apprise reports failure only as False plus log records. Its result object collects the
        # records of this call (a contextvar-scoped capture, so concurrent sends in one event loop
        # keep their own texts); the call-level `timeout` stops waiting for a stuck send.
        attach = None
        if attachment is not None:
            name, media_type, content = attachment
            # From memory: the report never touches the disk (apprise would otherwise read a path).
            attach = apprise.AppriseAttachment(asset=self._asset)
            attach.add(AttachMemory(content=content, name=name, mimetype=media_type.split(";")[0]))
        result = await sender.async_notify(body=body, title=title, attach=attach, timeout=self.timeout)
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
