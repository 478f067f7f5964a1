"""What the API shows of a definition holds no secret, and a GET-change-PUT keeps every stored one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ispmon.availability.endpoints import (
    REDACTED,
    build_endpoint,
    public_url,
    redact_url,
    restore_redacted,
)
from ispmon.models import Protocol
from ispmon.validation import error_list

# (definition, the secret substrings it holds): one secret in each place a definition can hold one.
SECRET_DEFINITIONS: list[tuple[dict[str, Any], list[str]]] = [
    ({"url": "https://api.example.net/v1/health?token=Tq9secret1&region=eu"}, ["Tq9secret1"]),
    ({"url": "https://api.example.net/health?api_key=K7secret2"}, ["K7secret2"]),
    ({"url": "https://api.example.net/hook?S3cretBare"}, ["S3cretBare"]),
    ({"url": "https://monitor:pa@ss-secret3@api.example.net/health"}, ["pa@ss-secret3", "ss-secret3"]),
    ({"url": "https://monitor:pa%40ss%3Asecret4@api.example.net/"}, ["pa%40ss%3Asecret4", "secret4"]),
    ({"url": "https://ghp_tokenAsUser5@api.example.net/"}, ["ghp_tokenAsUser5"]),
    ({"url": "http://u:p:secret6@127.0.0.1:8080/x"}, ["p:secret6", "secret6"]),
    (
        {"url": "https://api.example.net/login", "method": "POST", "body": '{"password": "B0dySecret7"}'},
        ["B0dySecret7"],
    ),
    ({"url": "https://api.example.net/", "headers": {"X-Auth": "HdrSecret8"}}, ["HdrSecret8"]),
    ({"url": "https://api.example.net/", "headers": {"Authorization": "Bearer Hdr9"}}, ["Hdr9"]),
    ({"url": "https://api.example.net/", "headers": {"Cookie": "sid=C00kie10"}}, ["C00kie10"]),
    (
        {"url": "mail.example.net:25", "protocol": "tcp", "send": "AUTH PLAIN Send11Secret\r\n"},
        ["Send11Secret"],
    ),
    ({"url": "radius.example.net:1812", "protocol": "udp", "send": "Udp12Secret"}, ["Udp12Secret"]),
    ({"url": "radius.example.net:1812", "protocol": "udp", "send_hex": "c0ffee1313"}, ["c0ffee1313"]),
    # Webhook-style URLs whose path is the credential.
    ({"url": "https://status.example.net/api/Zq81kPa0xT4mB7cW2e/status"}, ["Zq81kPa0xT4mB7cW2e"]),
    (
        {"url": "https://hooks.slack.com/services/T000/B000/XXXXslack14", "method": "POST"},
        ["T000", "B000", "XXXXslack14"],
    ),
    ({"url": "https://api.telegram.org/bot123456:AAtele15/getMe"}, ["AAtele15", "123456"]),
    ({"url": "https://discord.com/api/webhooks/9876/Disc0rd16"}, ["9876", "Disc0rd16"]),
    (
        {"url": "https://h.example/v1/3f2b8c1e-7d4a-4b1e-9c2a-0e5d6f7a8b9c/ping?x=Q17"},
        ["3f2b8c1e-7d4a-4b1e-9c2a-0e5d6f7a8b9c", "Q17"],
    ),
]


@pytest.mark.parametrize(("definition", "secrets"), SECRET_DEFINITIONS)
def test_public_dict_shows_no_secret(definition: dict[str, Any], secrets: list[str]) -> None:
    spec = build_endpoint({"name": "probe", **definition})
    shown = str(spec.public_dict())
    for secret in secrets:
        assert secret not in shown, shown
    assert REDACTED in shown


@pytest.mark.parametrize(("definition", "secrets"), SECRET_DEFINITIONS)
def test_a_get_put_round_trip_keeps_every_secret(definition: dict[str, Any], secrets: list[str]) -> None:
    spec = build_endpoint({"name": "probe", **definition})
    stored = spec.stored_dict()
    restored = restore_redacted({**spec.public_dict(), "name": "renamed"}, stored)
    again = build_endpoint(restored)
    assert again.stored_dict() == {**stored, "name": "renamed"}


def test_public_headers_stay_readable_and_every_other_value_is_redacted() -> None:
    spec = build_endpoint(
        {
            "name": "x",
            "url": "https://api.example.net/",
            "headers": {"accept": "application/json", "User-Agent": "ispmon", "X-Tenant": "acme"},
        }
    )
    assert spec.public_dict()["headers"] == {
        "accept": "application/json",
        "User-Agent": "ispmon",
        "X-Tenant": REDACTED,
    }


def test_url_redaction_keeps_the_shape() -> None:
    url = "https://mon:p@ss@api.example.net:8443/a/b?token=t&region=eu&&flag#frag"
    assert public_url(Protocol.HTTPS, url) == (
        f"https://mon:{REDACTED}@api.example.net:8443/a/b?token={REDACTED}&region={REDACTED}&&{REDACTED}#frag"
    )
    # dns:// queries are the record type, not a secret.
    assert (
        public_url(Protocol.DNS, "dns://192.0.2.53/a.example?type=MX") == "dns://192.0.2.53/a.example?type=MX"
    )
    assert public_url(Protocol.HTTP, "http://127.0.0.1/") == "http://127.0.0.1/"


def test_path_segments_are_masked_only_when_they_hold_a_secret() -> None:
    # Words, dates, numeric ids and version segments stay readable; a token-like segment does not.
    url = "https://api.example.net/v2/customers/1234/health-check/2024-05-01/index.html"
    assert public_url(Protocol.HTTPS, url) == url
    assert public_url(Protocol.HTTPS, "https://h.example/api/abcdEFGH12345678/status") == (
        f"https://h.example/api/{REDACTED}/status"
    )
    # On a known webhook host everything after the fixed prefix goes, however short.
    assert public_url(Protocol.HTTPS, "https://hooks.slack.com/services/T0/B0/x") == (
        f"https://hooks.slack.com/services/{REDACTED}/{REDACTED}/{REDACTED}"
    )
    assert public_url(Protocol.HTTPS, "https://HOOKS.slack.com:443/services/T0/B0/x/") == (
        f"https://HOOKS.slack.com:443/services/{REDACTED}/{REDACTED}/{REDACTED}/"
    )
    assert public_url(Protocol.HTTPS, "https://acme.webhook.office.com/webhookb2/a@b/x") == (
        f"https://acme.webhook.office.com/{REDACTED}/{REDACTED}/{REDACTED}"
    )
    # A DNS URL's path is the name asked for, not a secret.
    dns = "dns://192.0.2.53/abcdefgh12345678.example"
    assert public_url(Protocol.DNS, dns) == dns


def test_a_put_that_changes_a_readable_segment_keeps_the_masked_ones() -> None:
    stored = build_endpoint(
        {"name": "x", "url": "https://h.example/api/abcdEFGH12345678/status?k=v"}
    ).stored_dict()
    shown = public_url(Protocol.HTTPS, stored["url"])
    changed = {"url": shown.replace("h.example/api", "h2.example/api2").replace("/status", "/health")}
    assert restore_redacted(changed, stored)["url"] == "https://h2.example/api2/abcdEFGH12345678/health?k=v"
    # A client that types a new token replaces the stored one.
    new = {"url": "https://h.example/api/newTOKEN1234567890/status?k=v"}
    assert restore_redacted(new, stored)["url"] == new["url"]


def test_redact_url_handles_an_at_sign_in_the_password() -> None:
    # The old pattern stopped at the first '@' and showed "ss@db.example.net".
    assert redact_url("postgresql://ispmon:p@ss@db.example.net/ispmon") == (
        f"postgresql://ispmon:{REDACTED}@db.example.net/ispmon"
    )
    assert (
        redact_url("postgresql://ispmon@/ispmon?host=/run/pg") == "postgresql://ispmon@/ispmon?host=/run/pg"
    )


def test_restore_takes_only_the_pieces_still_redacted() -> None:
    stored = build_endpoint(
        {"name": "x", "url": "https://mon:old-pass@h.example/x?token=old&region=eu"}
    ).stored_dict()
    # The client changed the region and the host but kept the password and the token as shown.
    changed = {"url": f"https://mon:{REDACTED}@h2.example/x?token={REDACTED}&region=us"}
    assert restore_redacted(changed, stored)["url"] == "https://mon:old-pass@h2.example/x?token=old&region=us"
    # A new password replaces the stored one.
    new = {"url": f"https://mon:new-pass@h.example/x?token={REDACTED}&region={REDACTED}"}
    assert restore_redacted(new, stored)["url"] == "https://mon:new-pass@h.example/x?token=old&region=eu"
    # Header names are case-insensitive: a client that lower-cases them keeps the value.
    stored = build_endpoint(
        {"name": "x", "url": "http://h.example/", "headers": {"X-Auth": "s"}}
    ).stored_dict()
    assert restore_redacted({"headers": {"x-auth": REDACTED}}, stored)["headers"] == {"x-auth": "s"}


@pytest.mark.parametrize(
    "url",
    ["https://mon:s3cret@api.example.net/", "https://mon@api.example.net/", "https://:pw@api.example.net/"],
)
def test_url_credentials_and_an_authorization_header_are_refused_naming_both(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        build_endpoint({"name": "x", "url": url, "headers": {"authorization": "Bearer abc"}})
    errors = error_list(info.value)
    assert [e["field"] for e in errors] == ["url", "headers.authorization"]
    assert "not both" in errors[0]["message"]
    # The error does not echo the secrets either.
    assert "s3cret" not in str(info.value) and "abc" not in str(info.value)


def test_either_credential_alone_is_accepted() -> None:
    build_endpoint({"name": "x", "url": "https://mon:s3cret@api.example.net/"})
    build_endpoint({"name": "x", "url": "https://api.example.net/", "headers": {"Authorization": "Bearer a"}})
