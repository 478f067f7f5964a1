"""Channel parsing, classification and redaction; the sender's backoff and rate limiter (pure)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from ispmon.alerts.channels import (
    Channel,
    ChannelError,
    ChannelRegistry,
    parse_channel,
    parse_target,
    privacy_form,
    redact_secrets_in,
)
from ispmon.alerts.sender import DeliveryPolicy, RateLimiter

# apprise's e-mail plugin imports the stdlib `imghdr`, deprecated in 3.11 (apprise 2.2 loads it).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

TWILIO_SID = "AC" + "a" * 32
TWILIO_TOKEN = "b" * 32
SLACK_TOKEN = "TIiajkdnlazkcOXrIdevi7FQ"

# (url, kind, short, secrets that must not appear in the redacted form)
TARGETS = [
    (
        "mailto://alerts:Sm7pPassw0rd@127.0.0.1:2525?to=noc@example.net&from=ispmon@example.net",
        "email",
        False,
        ["Sm7pPassw0rd"],
    ),
    ("mailtos://alerts:Sm7pPassw0rd@smtp.example.net", "email", False, ["Sm7pPassw0rd"]),
    (
        "json://hook:HookPass99@127.0.0.1:8080/api/t0ken5ecret?x=1",
        "webhook",
        False,
        ["HookPass99", "t0ken5ecret"],
    ),
    ("form://127.0.0.1/path/f0rmT0ken", "webhook", False, ["f0rmT0ken"]),
    (f"slack://T1JJ3T3L2/A1BRTD4JD/{SLACK_TOKEN}/#noc", "slack", False, [SLACK_TOKEN, "T1JJ3T3L2"]),
    (f"https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/{SLACK_TOKEN}", "slack", False, [SLACK_TOKEN]),
    (
        f"twilio://{TWILIO_SID}:{TWILIO_TOKEN}@15551234567/15557654321",
        "sms",
        True,
        [TWILIO_SID, TWILIO_TOKEN],
    ),
    (
        "sns://AKIAIOSFODNN7EXAMPLE/wJalrXUtnFEMIK7MDENG/us-east-1/+15551234567",
        "sms",
        True,
        ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMIK7MDENG"],
    ),
    ("smseagle://eagleT0ken@127.0.0.1:8080/+15551234567", "sms", False, ["eagleT0ken"]),
    ("workflows://host.example:443/workfl0wid/s1gnature", "teams", False, ["workfl0wid", "s1gnature"]),
    ("tgram://123456789:AAbotT0kenSecret/987654", "telegram", False, ["AAbotT0kenSecret"]),
    (
        "discord://987654321012/Disc0rdTok3nAbcdef",
        "other",
        False,
        ["987654321012", "Disc0rdTok3nAbcdef"],
    ),
    ("ntfy://user:ntfyPass1@ntfy.example/t0picSecret", "other", False, ["ntfyPass1", "t0picSecret"]),
]


@pytest.mark.parametrize(
    ("url", "kind", "short", "secrets"), TARGETS, ids=[t[1] + ":" + t[0][:8] for t in TARGETS]
)
def test_target_kind_short_and_redaction(url: str, kind: str, short: bool, secrets: list[str]) -> None:
    target = parse_target(url)
    assert (target.kind, target.short) == (kind, short)
    assert target.fingerprint == hashlib.sha256(url.encode()).hexdigest()[:16]
    for secret in secrets:
        assert secret not in target.redacted
    assert url not in repr(target)
    assert target.redacted.split("://")[0] in url.split("://")[0] or kind == "slack"


# (url, what an operator must see, secrets that must not appear): URL shapes channels are made of,
# including those whose privacy form used to collapse to "json://[redacted]" (no credentials at
# all, IPv6, a password equal to the user name) or lost part of its host to a masked token.
PRIVACY = [
    ("json://user:pass@host/path", "json://user:****@host/path", ["pass"]),
    (
        "json://noc:hunter2-very-secret@127.0.0.1:9/hook",
        "json://noc:****@127.0.0.1:9/hook",
        ["hunter2-very-secret"],
    ),
    ("json://127.0.0.1:9/ops", "json://127.0.0.1:9/ops", []),
    ("json://[::1]:8080/hook", "json://[::1]:8080/hook", []),
    ("json://localhost/a", "json://localhost/a", []),
    ("json://user@host.example.net/abc", "json://user@host.example.net/abc", []),
    (
        "json://host.example.net:8080/path?-token=abcdef123456",
        "json://host.example.net:8080/path?",
        ["abcdef123456"],
    ),
    (
        "json://host.example.net:8080/path?token=abcdef123456",
        "json://host.example.net:8080/path?",
        ["abcdef123456"],
    ),
    (
        "jsons://host.example.net:8443/api/v1/webhook?-apikey=s3cr3tvalue&+X-Token=headersecret1",
        "jsons://host.example.net:8443/api/v1/",
        ["s3cr3tvalue", "headersecret1"],
    ),
    ("json://hooks.example.net/example", "json://hooks.example.net/****", ["/example"]),
    ("json://admin:admin@host.example.net/x", "json://****:****@host.example.net/x", ["admin"]),
    ("json://user:12345678@host.example.net/x", "json://user:****@host.example.net/x", ["12345678"]),
    ("form://user:pa%40ss@host.example.net/p", "form://user:****@host.example.net/p", ["pa@ss", "pa%40ss"]),
    (
        "mailto://user:Sm7pPassw0rd@smtp.example.net?to=noc@example.net",
        "mailto://user:****@smtp.example.net/noc%40example.net",
        ["Sm7pPassw0rd"],
    ),
    (
        "mailtos://noc-bot:app-password@smtp.example.net",
        "mailtos://noc-bot:****@smtp.example.net",
        ["app-password"],
    ),
    (f"slack://T1JJ3T3L2/A1BRTD4JD/{SLACK_TOKEN}", "slack://", [SLACK_TOKEN, "T1JJ3T3L2", "A1BRTD4JD"]),
    (
        f"twilio://{TWILIO_SID}:{TWILIO_TOKEN}@15551234567/15557654321",
        "15557654321",
        [TWILIO_SID, TWILIO_TOKEN],
    ),
    ("tgram://123456789:AAbotT0kenSecret/987654", "tgram://", ["AAbotT0kenSecret"]),
    (
        "ntfy://user:ntfyPass1@ntfy.example.net/t0picSecret",
        "ntfy://user:****@ntfy.example.net/****",
        ["ntfyPass1", "t0picSecret"],
    ),
]


@pytest.mark.parametrize(("url", "visible", "secrets"), PRIVACY, ids=[p[0] for p in PRIVACY])
def test_privacy_form_shows_the_host_and_masks_every_secret(
    url: str, visible: str, secrets: list[str]
) -> None:
    shown = parse_target(url).redacted
    assert visible in shown, shown
    assert "[redacted]" not in shown
    for secret in secrets:
        assert secret not in shown, (secret, shown)


def test_privacy_form_fallback_still_shows_the_host() -> None:
    # A plugin object that cannot print itself (here: no url() at all) gets our own form: user and
    # host kept, password and everything after the host masked.
    url = "json://noc:S3cretPass@hooks.example.net:8080/api/t0ken5ecret?-key=qu3ryS3cret"
    assert privacy_form(url, object(), "json") == "json://noc:****@hooks.example.net:8080/****"
    # Where the host goes holds a token, not a host: masked too.
    assert privacy_form("tgram://123456789:AAbotT0kenSecret/987654", object(), "tgram") == "tgram://****/****"


def test_redacted_form_keeps_addresses_for_operators() -> None:
    email = parse_target("mailto://alerts:pw12345@127.0.0.1:2525?to=noc@example.net&from=a@example.net")
    assert "noc%40example.net" in email.redacted and "127.0.0.1:2525" in email.redacted
    sms = parse_target(f"twilio://{TWILIO_SID}:{TWILIO_TOKEN}@15551234567/15557654321")
    assert "15557654321" in sms.redacted


def test_channel_public_dict() -> None:
    channel = parse_channel("noc", [TARGETS[0][0], TARGETS[6][0]], source="config")
    public = channel.public_dict()
    assert public["name"] == "noc" and public["source"] == "config"
    assert public["kinds"] == ["email", "sms"] and public["notification_type"] == "mixed"
    assert "Sm7pPassw0rd" not in str(public) and TWILIO_TOKEN not in str(public)
    assert channel.urls == [TARGETS[0][0], TARGETS[6][0]]
    assert parse_channel("mail", TARGETS[0][0]).public_dict()["notification_type"] == "email"


@pytest.mark.parametrize(
    ("name", "urls", "message"),
    [
        (
            "noc",
            ["mailto://a@example.net", "foo://user:Secr3tPw@host/x"],
            "urls[1]: not a valid apprise URL (scheme 'foo' is not supported)",
        ),
        ("noc", "foo://user:Secr3tPw@host", "url: not a valid apprise URL (scheme 'foo' is not supported)"),
        ("noc", "no url here", "url: not a valid apprise URL (no scheme://)"),
        ("noc", ["json://"], "urls[0]: not a valid apprise URL (json: missing or malformed parts)"),
        ("noc", [], "urls: must not be empty"),
        ("noc", "", "url: must be a non-empty string"),
        ("noc", [42], "urls[0]: must be a non-empty string"),
        ("noc", {"a": 1}, "urls: must be a URL string or a list of URL strings"),
        ("noc", ["mailto://a@example.net"] * 21, "urls: at most 20 URLs per channel"),
    ],
)
def test_invalid_channels_name_the_field(name: str, urls: object, message: str) -> None:
    with pytest.raises(ChannelError) as info:
        parse_channel(name, urls)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_apprise_reason_is_given_without_credentials() -> None:
    with pytest.raises(ChannelError) as info:
        parse_channel("sms", ["twilio://ACshort:TopSecretToken1@123"])
    text = str(info.value)
    assert text.startswith("urls[0]: not a valid apprise URL (twilio: ")
    assert "ACshort" not in text and "TopSecretToken1" not in text


@pytest.mark.parametrize("name", ["", "-noc", "noc-", "NOC", "a" * 65, "no c", "noc.x"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ChannelError, match=r"^name: "):
        parse_channel(name, "mailto://a@example.net")


@pytest.mark.parametrize("name", ["a", "noc", "noc-sms_2", "a" * 64])
def test_valid_names(name: str) -> None:
    assert parse_channel(name, "mailto://a@example.net").name == name


def test_redact_secrets_in_removes_every_credential_piece() -> None:
    url = "json://hook:Hook%40Pass99@127.0.0.1:8080/api/t0ken5ecret?key=qu3ryS3cret"
    target = parse_target(url)
    text = f"POST {url} failed; password Hook@Pass99, path t0ken5ecret, key qu3ryS3cret, user hook; host 127.0.0.1"
    cleaned = redact_secrets_in(text, [target])
    for secret in (url, "Pass99", "t0ken5ecret", "qu3ryS3cret", "user hook"):
        assert secret not in cleaned
    assert "failed" in cleaned and "host 127.0.0.1" in cleaned


def test_registry() -> None:
    a = parse_channel("a", "mailto://a@example.net", source="config")
    b = parse_channel("b", "mailto://b@example.net", source="api")
    registry = ChannelRegistry([b, a])
    assert registry.names() == ["a", "b"] and [c.name for c in registry.all()] == ["a", "b"]
    c = Channel("c", a.targets, source="config")
    registry.replace_source("config", [c])
    assert registry.names() == ["b", "c"] and registry.get("a") is None
    registry.set(parse_channel("a", "mailto://x@example.net"))
    assert registry.remove("a") and not registry.remove("a")


@pytest.mark.parametrize(
    ("attempts", "rand", "expected"),
    [
        (1, 0.5, 10.0),
        (2, 0.5, 20.0),
        (3, 0.5, 40.0),
        (1, 0.0, 8.0),
        (1, 1.0, 12.0),
        (7, 0.5, 640.0),
        (8, 0.5, 900.0),
        (8, 0.0, 720.0),
        (8, 1.0, 900.0),
        (500, 0.5, 900.0),
        (0, 0.5, 10.0),
    ],
)
def test_backoff(attempts: int, rand: float, expected: float) -> None:
    assert DeliveryPolicy().backoff(attempts, rand=lambda: rand) == pytest.approx(expected)


def test_backoff_jitter_stays_within_20_percent() -> None:
    values = {DeliveryPolicy(retry_base=1.0).backoff(3) for _ in range(200)}
    assert min(values) >= 3.2 and max(values) <= 4.8 and len(values) > 1


def test_rate_limiter_burst_then_refill() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    limiter = RateLimiter(rate_per_minute=2)
    assert [limiter.take("sms", t0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("sms", t0) == pytest.approx(30.0)
    assert limiter.take("email", t0) == 0.0  # channels have their own buckets
    assert limiter.take("sms", t0 + timedelta(seconds=10)) == pytest.approx(20.0)
    assert limiter.take("sms", t0 + timedelta(seconds=30)) == 0.0
    assert limiter.take("sms", t0 + timedelta(seconds=30)) == pytest.approx(30.0)
    # A long quiet spell refills to the burst, not beyond.
    later = t0 + timedelta(hours=1)
    assert [limiter.take("sms", later) for _ in range(3)] == [0.0, 0.0, pytest.approx(30.0)]


def test_rate_limiter_unlimited() -> None:
    limiter = RateLimiter(rate_per_minute=0)
    assert all(limiter.take("x", datetime(2026, 1, 1, tzinfo=UTC)) == 0.0 for _ in range(100))


@pytest.mark.parametrize(
    ("env", "lease"),
    [
        ({}, 120.0),
        ({"ALERT_SEND_TIMEOUT": "2"}, 60.0),
        ({"ALERT_SEND_TIMEOUT": "2", "ALERT_SEND_LEASE_SECONDS": "5"}, 8.0),
        ({"ALERT_SEND_TIMEOUT": "1", "ALERT_SEND_LEASE_SECONDS": "30"}, 30.0),
    ],
)
def test_send_lease_is_the_setting_but_never_shorter_than_four_timeouts(
    env: dict[str, str], lease: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ispmon.alerts.sender import Sender
    from ispmon.alerts.wiring import delivery_policy
    from ispmon.config import Settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sender = Sender(None, None, None, delivery_policy(Settings()))  # type: ignore[arg-type]
    assert sender.lease == lease
