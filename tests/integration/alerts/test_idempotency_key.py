"""The idempotency key travels with each notification: what a receiver can use to drop the second
copy that at-least-once delivery sends after a failed attempt or a crash mid-send.

Real apprise, real receivers on 127.0.0.1 (aiohttp for webhooks, aiosmtpd for mail), the outbox in
real PostgreSQL. The crash is a sender whose process dies right after the receiver accepted, before
the acceptance reached the table; a second sender picks the row up when the lease runs out.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree

import apprise
import asyncpg
import pytest

from ispmon.alerts.notifier import KEY_FIELD, KEY_HEADER, carry_key
from ispmon.store.notifications import NotificationRepo

from .test_alert_delivery import (
    FAST,
    HOOK_PASSWORD,
    SLACK_TOKENS,
    SMTP_PASSWORD,
    SMTP_USER,
    Clock,
    Hit,
    MailSink,
    Receiver,
    draft,
    json_url,
    make_sender,
)

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


class ProcessDied(BaseException):
    """Stands for kill -9: nothing after it runs (BaseException, so no handler of ours catches it)."""


class DiesAfterSend(NotificationRepo):
    """The receiver has accepted, and the process dies before the table hears of it."""

    async def add_delivered(self, notification_id: int, fingerprint: str) -> None:
        raise ProcessDied


async def crash_mid_send_then_resend(pool: asyncpg.Pool, channels: dict[str, Any], port: int) -> list[int]:
    """Enqueue two notifications on `channels`' first channel; the first process dies mid-send of
    the first, a second process after the lease sends both. Ids of the two rows."""
    (channel,) = channels
    clock = Clock()
    crashing = make_sender(pool, channels, port, clock=clock)
    crashing.repo = DiesAfterSend(pool)
    ids = await crashing.repo.enqueue([draft("k1", channel), draft("k2", channel)])
    with pytest.raises(ProcessDied):
        await crashing.run_once()
    clock.advance(crashing.lease + 1)
    restarted = make_sender(pool, channels, port, clock=clock)
    assert await restarted.run_once() == 2
    assert await restarted.run_once() == 0
    return ids


async def keys_of(pool: asyncpg.Pool, ids: list[int]) -> list[str]:
    repo = NotificationRepo(pool)
    rows = [await repo.get(i) for i in ids]
    return [r["idempotency_key"] for r in rows if r is not None]


def hook_keys(hits: list[Hit]) -> list[tuple[str, str]]:
    """(header, body field) of each JSON webhook hit."""
    return [(h.headers[KEY_HEADER], json.loads(h.body)[KEY_FIELD]) for h in hits]


async def test_json_webhook_gets_the_same_key_on_a_retry_and_another_for_another_notification(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    clock = Clock()
    sender = make_sender(pool, {"hook": json_url(receiver.port)}, receiver.port, clock=clock)
    receiver.plan["/"] = [500]  # the first attempt fails, everything after it is accepted
    ids = await sender.repo.enqueue([draft("a1", "hook"), draft("b1", "hook")])
    assert await sender.run_once() == 1
    clock.advance(FAST.retry_max)
    assert await sender.run_once() == 1
    first, second = await keys_of(pool, ids)
    assert first != second
    assert [h.status for h in receiver.hits] == [500, 200, 200]
    assert hook_keys(receiver.hits) == [(first, first), (second, second), (first, first)]
    # apprise's own fields are untouched.
    body = json.loads(receiver.hits[2].body)
    assert (body["title"], body["type"]) == ("DOWN: router a1", "info")


async def test_a_crash_mid_send_repeats_the_send_with_the_same_key(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    ids = await crash_mid_send_then_resend(pool, {"hook": json_url(receiver.port)}, receiver.port)
    first, second = await keys_of(pool, ids)
    # At-least-once: the receiver got the first notification twice, and can tell by its key.
    assert [h.status for h in receiver.hits] == [200, 200, 200]
    assert hook_keys(receiver.hits) == [(first, first), (first, first), (second, second)]
    assert len({k for k, _ in hook_keys(receiver.accepted)}) == 2


async def test_form_and_xml_webhooks_carry_the_key(pool: asyncpg.Pool, receiver: Receiver) -> None:
    channels = {
        "form": f"form://hook:{HOOK_PASSWORD}@127.0.0.1:{receiver.port}/formhook",
        "xml": f"xml://hook:{HOOK_PASSWORD}@127.0.0.1:{receiver.port}/xmlhook",
    }
    sender = make_sender(pool, channels, receiver.port)
    ids = await sender.repo.enqueue([draft("f1", "form"), draft("x1", "xml")])
    assert await sender.run_once() == 2
    form_key, xml_key = await keys_of(pool, ids)
    hits = {h.path: h for h in receiver.accepted}
    form = hits["/formhook"]
    assert form.headers[KEY_HEADER] == form_key
    assert parse_qs(form.body.decode())[KEY_FIELD] == [form_key]
    xml = hits["/xmlhook"]
    assert xml.headers[KEY_HEADER] == xml_key
    assert [e.text for e in ElementTree.fromstring(xml.body).iter(KEY_FIELD)] == [xml_key]
    assert b"xsi:noNamespaceSchemaLocation" not in xml.body  # apprise's XSD has no such element


async def test_email_carries_the_key_in_a_header_with_one_message_id(
    pool: asyncpg.Pool, smtp: MailSink, receiver: Receiver
) -> None:
    url = f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}?to=noc@example.net&from=ispmon@example.net"
    ids = await crash_mid_send_then_resend(pool, {"mail": url}, receiver.port)
    first, second = await keys_of(pool, ids)
    assert [m[KEY_HEADER] for m in smtp.messages] == [first, first, second]
    assert all(len(m.get_all("Message-ID") or []) == 1 for m in smtp.messages)
    # apprise makes a fresh Message-ID per message: the key, not the Message-ID, tells a repeat.
    assert len({m["Message-ID"] for m in smtp.messages}) == 3


def test_channels_without_room_for_a_key_are_left_as_they_are() -> None:
    slack = apprise.Apprise.instantiate("slack://{}/{}/{}/#noc".format(*SLACK_TOKENS))
    before = dict(vars(slack))
    assert carry_key(slack, "alert:1:opened:opened:noc") is False
    assert vars(slack) == before
    hook = apprise.Apprise.instantiate("json://127.0.0.1/x?+X-Team=noc&:team=noc")
    assert carry_key(hook, "k") is True
    # The URL's own extras stay; the key is added next to them.
    assert hook.headers == {"X-Team": "noc", KEY_HEADER: "k"}
    assert hook.payload_extras == {"team": "noc", KEY_FIELD: "k"}
