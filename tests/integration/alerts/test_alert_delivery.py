"""Notification delivery end to end: the outbox in real PostgreSQL, apprise sending to a real SMTP
server (aiosmtpd) and to an aiohttp receiver on 127.0.0.1 whose answers the test scripts.

Slack and Twilio post to fixed cloud hosts; `AppriseNotifier(customize=...)` points those plugin
instances at the loopback receiver, so their real payloads are exercised without leaving loopback.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import pytest
import structlog
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from apprise.plugins.slack import NotifySlack
from apprise.plugins.twilio import NotifyTwilio

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.notifier import AppriseNotifier
from ispmon.alerts.sender import DeliveryPolicy, Sender
from ispmon.store.notifications import ChannelRepo, NotificationDraft, NotificationRepo

# apprise's e-mail plugin imports the stdlib `imghdr`, deprecated in 3.11 (apprise 2.2 loads it).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

SMTP_USER, SMTP_PASSWORD = "alerts", "Sm7p-Passw0rd"
HOOK_PASSWORD, HOOK_TOKEN = "H00kPassw0rd", "t0kenInPath99"
TWILIO_SID, TWILIO_TOKEN = "AC" + "1" * 32, "f" * 32
SLACK_TOKENS = ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ")
SECRETS = (SMTP_PASSWORD, HOOK_PASSWORD, HOOK_TOKEN, TWILIO_TOKEN, SLACK_TOKENS[2])
FAST = DeliveryPolicy(max_attempts=3, retry_base=0.05, retry_max=0.2, rate_per_minute=1000, timeout=5.0)


@dataclass
class Hit:
    path: str
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1: answers 200 unless `plan[path_prefix]` lists other statuses."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    plan: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if h.status < 300]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = 200
        for prefix, statuses in self.plan.items():
            if request.path.startswith(prefix) and statuses:
                status = statuses.pop(0)
        self.hits.append(Hit(request.path, status, request.content_type, body, dict(request.headers)))
        if request.path.startswith("/twilio/") and status == 200:
            return web.json_response({"sid": "SM1"}, status=201)
        # Slack's webhook answers the text "ok"; the others ignore the body.
        return web.Response(status=status, text="ok" if status == 200 else "nope")


class MailSink:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok)


class Clock:
    def __init__(self) -> None:
        self._now: datetime | None = None

    @property
    def now(self) -> datetime:
        # A second ahead of the database's now(), which stamps new rows as due. Set at first use,
        # not at creation: building a sender (apprise loading its plugins) can take seconds on a
        # loaded machine, and rows enqueued after that would not be due yet.
        if self._now is None:
            self._now = datetime.now(UTC) + timedelta(seconds=1)
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        self._now = value

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def smtp() -> AsyncIterator[MailSink]:
    sink = MailSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="mx.test", authenticator=_authenticate, auth_require_tls=False),
        "127.0.0.1",
        0,
    )
    sink.port = server.sockets[0].getsockname()[1]
    yield sink
    server.close()
    await server.wait_closed()


def loopback_customize(port: int) -> Callable[[Any], None]:
    def customize(plugin: Any) -> None:
        if isinstance(plugin, NotifySlack):
            plugin.webhook_url = f"http://127.0.0.1:{port}/services"
        elif isinstance(plugin, NotifyTwilio):
            plugin.notify_sms_url = f"http://127.0.0.1:{port}/twilio/{{sid}}/Messages.json"

    return customize


def draft(key: str, channel: str, **kw: Any) -> NotificationDraft:
    return NotificationDraft(
        idempotency_key=key,
        channel=channel,
        event="opened",
        step=1,
        title=f"DOWN: router {key}",
        body=f"Router {key} is down.\nSince 10:00 UTC.",
        short_body=f"[crit] DOWN {key} 5m",
        **kw,
    )


def json_url(port: int, path: str = HOOK_TOKEN) -> str:
    return f"json://hook:{HOOK_PASSWORD}@127.0.0.1:{port}/{path}"


def make_sender(
    pool: asyncpg.Pool, channels: dict[str, Any], port: int, policy: DeliveryPolicy = FAST, clock: Any = None
) -> Sender:
    registry = ChannelRegistry(parse_channel(name, urls) for name, urls in channels.items())
    notifier = AppriseNotifier(timeout=policy.timeout, customize=loopback_customize(port))
    return Sender(NotificationRepo(pool), registry, notifier, policy, clock or Clock(), idle_poll=0.5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_secrets(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text)


async def test_email_arrives_with_title_in_subject(
    pool: asyncpg.Pool, smtp: MailSink, receiver: Receiver
) -> None:
    url = f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}?to=noc@example.net&from=ispmon@example.net"
    sender = make_sender(pool, {"mail": url}, receiver.port)
    [nid] = await sender.repo.enqueue([draft("e1", "mail")])
    assert await sender.run_once() == 1
    [message] = smtp.messages
    assert message["Subject"] == "DOWN: router e1" and message["To"] == "noc@example.net"
    plain = message.get_body(("plain",))
    assert plain is not None and "Router e1 is down." in plain.get_content()
    row = await sender.repo.get(nid)
    assert row is not None and (row["state"], row["attempts"]) == ("sent", 1)
    assert row["delivered_targets"] == [sender.registry.all()[0].targets[0].fingerprint]


async def test_json_slack_and_sms_payloads(pool: asyncpg.Pool, receiver: Receiver) -> None:
    slack = "slack://{}/{}/{}/#noc".format(*SLACK_TOKENS)
    twilio = f"twilio://{TWILIO_SID}:{TWILIO_TOKEN}@15551234567/15557654321"
    sender = make_sender(
        pool, {"hook": json_url(receiver.port), "slack": slack, "sms": twilio}, receiver.port
    )
    await sender.repo.enqueue([draft("j1", "hook"), draft("s1", "slack"), draft("m1", "sms")])
    assert await sender.run_once() == 3
    by_prefix = {h.path.split("/")[1]: h for h in receiver.accepted}
    assert set(by_prefix) == {HOOK_TOKEN, "services", "twilio"}
    hook = by_prefix[HOOK_TOKEN]
    assert hook.content_type == "application/json"
    assert b'"title": "DOWN: router j1"' in hook.body and b"Router j1 is down." in hook.body
    slack_hit = by_prefix["services"]
    assert slack_hit.path == "/services/" + "/".join(SLACK_TOKENS)
    assert b"DOWN: router s1" in slack_hit.body and b"Router s1 is down." in slack_hit.body
    # The SMS target is short (Twilio: 160 characters): the short text alone, no title.
    sms = parse_qs(by_prefix["twilio"].body.decode())
    assert sms["Body"] == ["[crit] DOWN m1 5m"] and sms["To"] == ["+15557654321"]


async def test_500_twice_then_200_delivers_once(pool: asyncpg.Pool, receiver: Receiver) -> None:
    clock = Clock()
    sender = make_sender(pool, {"hook": json_url(receiver.port)}, receiver.port, clock=clock)
    receiver.plan[f"/{HOOK_TOKEN}"] = [500, 500]
    [nid] = await sender.repo.enqueue([draft("r1", "hook")])
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await sender.run_once()
            clock.advance(FAST.retry_max)
    row = await sender.repo.get(nid)
    assert row is not None and (row["state"], row["attempts"]) == ("sent", 3)
    assert [h.status for h in receiver.hits] == [500, 500, 200] and len(receiver.accepted) == 1
    assert "error=500" in row["last_error"]
    failed = [e for e in logs if e["event"] == "notification_failed"]
    assert [e["attempt"] for e in failed] == [1, 2] and all(0 < e["retry_in"] <= 0.2 for e in failed)
    assert [e["attempts"] for e in logs if e["event"] == "notification_sent"] == [3]
    assert_no_secrets(logs, row["last_error"])


async def test_receiver_down_then_up_delivers_once(pool: asyncpg.Pool, receiver: Receiver) -> None:
    clock = Clock()
    sender = make_sender(pool, {"hook": json_url(receiver.port)}, receiver.port, clock=clock)
    await receiver.stop()
    [nid] = await sender.repo.enqueue([draft("d1", "hook")])
    assert await sender.run_once() == 0
    row = await sender.repo.get(nid)
    assert row is not None and row["state"] == "pending" and "Connection error" in row["last_error"]
    await receiver.start()  # same port
    assert await sender.run_once() == 0  # not due yet: the backoff holds it back
    clock.advance(FAST.retry_max)
    assert await sender.run_once() == 1
    assert len(receiver.accepted) == 1
    row = await sender.repo.get(nid)
    assert row is not None and (row["state"], row["attempts"]) == ("sent", 2)


async def test_always_failing_is_dead_lettered_without_secrets(
    pool: asyncpg.Pool, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    sender = make_sender(pool, {"hook": json_url(receiver.port)}, receiver.port, clock=clock)
    receiver.plan[f"/{HOOK_TOKEN}"] = [500] * 10
    [nid, orphan] = await sender.repo.enqueue([draft("f1", "hook"), draft("f2", "nowhere")])
    with structlog.testing.capture_logs() as logs:
        for _ in range(FAST.max_attempts + 1):
            await sender.run_once()
            clock.advance(FAST.retry_max)
    row = await sender.repo.get(nid)
    assert row is not None and (row["state"], row["attempts"]) == ("dead", FAST.max_attempts)
    assert row["last_error"].startswith("target 1/1 (webhook): Failed to send JSON POST notification")
    assert len(receiver.hits) == FAST.max_attempts
    lost = await sender.repo.get(orphan)
    assert (
        lost is not None
        and lost["state"] == "dead"
        and lost["last_error"] == "channel 'nowhere' is not defined"
    )
    dead = [e for e in logs if e["event"] == "notification_dead_lettered"]
    assert {e["id"] for e in dead} == {nid, orphan} and all(e["log_level"] == "error" for e in dead)
    assert (await sender.repo.count_by_state())["dead"] == 2
    # Everything but the test's own receiver (whose access log names the path it was called on).
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.access")]
    assert any(r.name == "apprise" for r in caplog.records)
    assert_no_secrets(logs, row["last_error"], ours)
    # An operator gives it another round.
    retried = await sender.repo.retry(nid)
    assert retried is not None and (retried["state"], retried["attempts"]) == ("pending", 0)
    assert await sender.repo.retry(nid) is None


async def test_restart_delivers_pending_rows_exactly_once(pool: asyncpg.Pool, receiver: Receiver) -> None:
    channels = {"hook": json_url(receiver.port)}
    repo = NotificationRepo(pool)
    ids = await repo.enqueue([draft(f"p{i}", "hook") for i in range(3)])
    # A first process leased one row and died mid-send: the lease keeps it away from others...
    crashed = await repo.due(datetime.now(UTC) + timedelta(seconds=1), limit=1)
    assert [r["id"] for r in crashed] == ids[:1]
    first = make_sender(pool, channels, receiver.port, clock=lambda: datetime.now(UTC))
    first.start()
    first.wake()
    await _wait_until(lambda: len(receiver.accepted) == 2)
    await first.close()
    # ...and a fresh process after the lease ran out sends it, once; the others are not repeated.
    later = Clock()
    later.advance(first.lease + 1)
    second = make_sender(pool, channels, receiver.port, clock=later)
    assert await second.run_once() == 1
    assert await second.run_once() == 0
    assert sorted(h.body.count(b"router p") for h in receiver.accepted) == [1, 1, 1]
    assert len(receiver.accepted) == 3
    assert (await repo.count_by_state())["sent"] == 3


async def test_two_senders_at_once_send_each_row_once(pool: asyncpg.Pool, receiver: Receiver) -> None:
    channels = {f"c{i}": json_url(receiver.port, f"path{i}x") for i in range(4)}
    receiver.delay = 0.05
    a, b = (make_sender(pool, channels, receiver.port) for _ in range(2))
    await a.repo.enqueue([draft(f"k{i}", f"c{i % 4}") for i in range(12)])
    done = await asyncio.gather(a.run_once(), b.run_once())
    assert sum(done) == 12 and len(receiver.accepted) == 12


async def test_duplicate_enqueue_is_one_row(pool: asyncpg.Pool) -> None:
    repo = NotificationRepo(pool)
    first = await repo.enqueue([draft("same", "hook"), draft("other", "hook")])
    async with pool.acquire() as conn, conn.transaction():
        again = await repo.enqueue([draft("same", "hook")], conn=conn)
    assert len(first) == 2 and again == []
    assert len(await repo.list(channel="hook")) == 2


async def test_partial_failure_does_not_resend_to_the_target_that_accepted(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    clock = Clock()
    urls = [json_url(receiver.port, "okpath1"), json_url(receiver.port, "failpath1")]
    sender = make_sender(pool, {"both": urls}, receiver.port, clock=clock)
    receiver.plan["/failpath1"] = [503]
    [nid] = await sender.repo.enqueue([draft("m1", "both")])
    assert await sender.run_once() == 0
    row = await sender.repo.get(nid)
    ok, failing = sender.registry.all()[0].targets
    assert row is not None and row["delivered_targets"] == [ok.fingerprint]
    assert row["last_error"].startswith("target 2/2 (webhook): ")
    clock.advance(FAST.retry_max)
    assert await sender.run_once() == 1
    assert [h.path for h in receiver.hits] == ["/okpath1", "/failpath1", "/failpath1"]
    row = await sender.repo.get(nid)
    assert row is not None and sorted(row["delivered_targets"]) == sorted(
        [ok.fingerprint, failing.fingerprint]
    )


async def test_rate_limit_postpones_without_counting_attempts(pool: asyncpg.Pool, receiver: Receiver) -> None:
    clock = Clock()
    policy = DeliveryPolicy(max_attempts=3, retry_base=0.05, retry_max=0.2, rate_per_minute=2, timeout=5.0)
    sender = make_sender(pool, {"sms": json_url(receiver.port)}, receiver.port, policy, clock)
    ids = await sender.repo.enqueue([draft(f"q{i}", "sms") for i in range(5)])
    with structlog.testing.capture_logs() as logs:
        assert await sender.run_once() == 2
        assert await sender.run_once() == 0  # still limited; logged once per minute only
    rows = {r["id"]: r for r in await sender.repo.list()}
    assert [rows[i]["state"] for i in ids] == ["sent", "sent", "pending", "pending", "pending"]
    assert all(rows[i]["attempts"] == 0 and rows[i]["next_attempt_at"] > clock.now for i in ids[2:])
    assert [e["event"] for e in logs if e["event"].startswith("notification_rate")] == [
        "notification_rate_limited"
    ]
    clock.advance(30)
    assert await sender.run_once() == 1
    assert [h.body.count(b"router q") for h in receiver.accepted] == [1, 1, 1]
    assert b"router q2" in receiver.accepted[2].body  # order within a channel is kept


async def test_concurrent_failing_sends_keep_their_own_errors(receiver: Receiver) -> None:
    receiver.delay = 0.3  # both requests are in flight at the same time
    receiver.plan = {"/first1": [500], "/second": [404]}
    notifier = AppriseNotifier(timeout=5)
    targets = [
        parse_channel(
            "x",
            [
                json_url(receiver.port, "first1"),
                json_url(receiver.port, "second"),
                json_url(closed_port(), "third3"),
            ],
        ).targets
    ][0]
    errors = await asyncio.gather(*(notifier.send(t, "title", "body") for t in targets))
    assert errors[0] is not None and "error=500" in errors[0] and "404" not in errors[0]
    assert errors[1] is not None and "error=404" in errors[1] and "500" not in errors[1]
    assert errors[2] is not None and "Connection error" in errors[2] and "error=" not in errors[2]
    assert_no_secrets(*errors)


async def test_cancel_list_and_channel_repo(pool: asyncpg.Pool) -> None:
    alert_id = await pool.fetchval(
        """INSERT INTO alerts (endpoint_id, rule_id, kind, severity, title, message, started_at)
           VALUES ('r1', 'down', 'outage', 'critical', 't', 'm', now()) RETURNING id"""
    )
    repo = NotificationRepo(pool)
    drafts = [draft("a1", "hook", alert_id=alert_id), draft("a2", "hook", alert_id=alert_id)]
    drafts[1].event = "escalated"
    await repo.enqueue(drafts)
    assert await repo.cancel_for_alert(alert_id, ["escalated"]) == 1
    assert [r["state"] for r in await repo.list(alert_id=alert_id)] == ["cancelled", "pending"]
    assert await repo.cancel_for_alert(alert_id) == 1
    assert (await repo.count_by_state())["cancelled"] == 2
    assert await repo.next_due_at() is None

    channels = ChannelRepo(pool)
    await channels.upsert("noc", ["mailto://a@example.net"])
    await channels.upsert("noc", ["mailto://b@example.net", "json://127.0.0.1/x"])
    assert await channels.all() == [("noc", ["mailto://b@example.net", "json://127.0.0.1/x"])]
    assert await channels.delete("noc") and not await channels.delete("noc")


async def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


class FlakyRepo(NotificationRepo):
    """The database goes away for the first two polls."""

    failures = 2

    async def due(self, now: datetime, limit: int = 100, lease: float = 60.0) -> list[asyncpg.Record]:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("connection refused by postgresql://ispmon:DbPassw0rd@db/ispmon")
        return await super().due(now, limit, lease)


async def test_loop_survives_database_errors(pool: asyncpg.Pool, receiver: Receiver) -> None:
    registry = ChannelRegistry([parse_channel("hook", json_url(receiver.port))])
    sender = Sender(FlakyRepo(pool), registry, AppriseNotifier(timeout=5), FAST, error_pause=0.05)
    await sender.repo.enqueue([draft("z1", "hook")])
    with structlog.testing.capture_logs() as logs:
        sender.start()
        await _wait_until(lambda: len(receiver.accepted) == 1)
        await sender.close()
    errors = [e for e in logs if e["event"] == "notification_sender_error"]
    assert len(errors) == 2 and errors[0]["error"].startswith("ConnectionRefusedError: ")
