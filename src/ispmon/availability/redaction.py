"""Secrets out of what the API shows of an endpoint, and back in when a client returns it.

Every API read of a definition goes through `EndpointSpec.public_dict`, which uses these: URL
user info, query values, path segments that hold a token (webhook-style URLs), request bodies,
payloads and all header values but an allow-list become REDACTED. `restore_redacted` undoes
that for a PUT of what a GET returned, piece by piece,
so a client that changes one field keeps the stored secrets. Work happens on the raw text of the
URL (never re-encoded), so a restored URL is byte-for-byte the stored one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from ispmon.models import Protocol

# What the API shows of a definition never holds a secret (dashboards read it, with or without
# the read-only token): URL user info and query values, bodies, payloads and every header value
# but these, which describe the request rather than authenticate it.
REDACTED = "[redacted]"
PUBLIC_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-type",
        "host",
        "pragma",
        "user-agent",
    }
)
SECRET_FIELDS = ("body", "send", "send_hex")  # shown as REDACTED whenever they are set


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


@dataclass(frozen=True, slots=True)
class _UrlParts:
    """A URL cut into raw text pieces, so that redacting and restoring never re-encode the rest."""

    head: str  # "scheme://"
    userinfo: str | None  # between "://" and the last "@" of the authority
    hostport: str
    path: str
    query: str | None  # after "?", before "#"
    fragment: str  # "#..." or ""

    def join(self) -> str:
        userinfo = f"{self.userinfo}@" if self.userinfo is not None else ""
        query = f"?{self.query}" if self.query is not None else ""
        return f"{self.head}{userinfo}{self.hostport}{self.path}{query}{self.fragment}"


def _split_url(url: str) -> _UrlParts | None:
    head, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(head):
        return None
    # The authority ends at the first '/', '?' or '#' (RFC 3986 3.2, and what yarl/aiohttp do);
    # inside it the user info ends at the LAST '@', so an unencoded '@' in a password stays in it.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, rest = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    rest, hash_, fragment = rest.partition("#")
    path, qmark, query = rest.partition("?")
    return _UrlParts(
        f"{head}://", userinfo if at else None, hostport, path, query if qmark else None, hash_ + fragment
    )


def _redact_userinfo(userinfo: str | None, keep_lone_user: bool) -> str | None:
    if userinfo is None:
        return None
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{user}:{REDACTED}"
    return userinfo if keep_lone_user else REDACTED


def redact_url(url: str) -> str:
    """`http://user:secret@host/` -> `http://user:[redacted]@host/` (the user is kept; for DSNs
    and log lines, where the query says where the database is, not who may use it)."""
    parts = _split_url(url)
    if parts is None or parts.userinfo is None or ":" not in parts.userinfo:
        return url
    return replace(parts, userinfo=_redact_userinfo(parts.userinfo, keep_lone_user=True)).join()


def _redact_query(query: str) -> str:
    items = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        # A bare item ("?s3cr3t") may be the key itself; an empty one ("a=1&&b=2") says nothing.
        items.append(f"{key}={REDACTED}" if eq else (REDACTED if item else item))
    return "&".join(items)


# Webhook services whose URL path IS the credential: every segment after the fixed prefix (the
# number of leading segments kept) is masked, short ones too (Slack's T000/B000 ids name the team).
WEBHOOK_PATH_PREFIX: dict[str, int] = {
    "hooks.slack.com": 1,  # /services/<team>/<bot>/<token>
    "discord.com": 2,  # /api/webhooks/<id>/<token>
    "discordapp.com": 2,
    "api.telegram.org": 0,  # /bot<id>:<token>/<method>
    "chat.googleapis.com": 0,  # /v1/spaces/<space>/messages?key=..&token=..
    "outlook.office.com": 1,  # /webhook/<guid>@<guid>/IncomingWebhook/<id>/<guid>
}
_WEBHOOK_DOMAIN_SUFFIX = (".webhook.office.com", ".logic.azure.com")
# Elsewhere a segment is masked when it looks like a token: 16+ characters mixing letters and
# digits (API keys, UUIDs, hashes), or a Telegram-style "bot<id>:<token>". Words, dates, numeric
# ids and short version segments ("v1", "2024-05-01", "health-check") stay readable.
_TOKEN_SEGMENT = re.compile(r"(?=[^/]*[A-Za-z])(?=[^/]*[0-9])[^/]{16,}|bot[0-9]+:[^/]+", re.I)


def _webhook_prefix(hostport: str) -> int | None:
    host = hostport.rpartition("@")[2]
    host = (host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]).lower()
    host = host.rstrip(".")
    if host in WEBHOOK_PATH_PREFIX:
        return WEBHOOK_PATH_PREFIX[host]
    if host.endswith(_WEBHOOK_DOMAIN_SUFFIX):
        return 0
    return None


def _secret_segments(hostport: str, path: str) -> list[bool]:
    """Per segment of `path` (split at '/'; the first is the empty text before the leading '/'),
    whether it is masked: see WEBHOOK_PATH_PREFIX and _TOKEN_SEGMENT."""
    segments = path.split("/")
    prefix = _webhook_prefix(hostport)
    return [
        bool(seg)
        and (
            (prefix is not None and i > prefix)  # segment 0 is "" before the leading '/'
            or _TOKEN_SEGMENT.fullmatch(seg) is not None
        )
        for i, seg in enumerate(segments)
    ]


def _redact_path(hostport: str, path: str) -> str:
    if not path or path == "/":
        return path
    masks = _secret_segments(hostport, path)
    return "/".join(REDACTED if masked else seg for seg, masked in zip(path.split("/"), masks, strict=True))


def public_url(protocol: Protocol, url: str) -> str:
    """An endpoint's `url` as the API shows it: user info (a user alone may be a token) and, for
    http(s), every query value and every path segment that holds a secret (`_secret_segments`)
    replaced by REDACTED; the keys and the other segments stay, so the shape is readable."""
    web = protocol in (Protocol.HTTP, Protocol.HTTPS)
    if "@" not in url and "?" not in url and not web:  # nothing to hide, nothing to parse
        return url
    parts = _split_url(url)
    if parts is None:
        return url
    userinfo = _redact_userinfo(parts.userinfo, keep_lone_user=False)
    query, path = parts.query, parts.path
    if web:
        path = _redact_path(parts.hostport, path)
        if query:
            query = _redact_query(query)
    return replace(parts, userinfo=userinfo, path=path, query=query).join()


def _restore_path(parts: _UrlParts, old: _UrlParts) -> str:
    # The n-th REDACTED segment takes the n-th stored segment that was shown as REDACTED, so a
    # client may change the host or a readable segment and keep the masked ones.
    hidden = [
        seg
        for seg, masked in zip(old.path.split("/"), _secret_segments(old.hostport, old.path), strict=True)
        if masked
    ]
    out = []
    for seg in parts.path.split("/"):
        out.append(hidden.pop(0) if seg == REDACTED and hidden else seg)
    return "/".join(out)


def _restore_query(query: str, old_query: str) -> str:
    # The n-th "key=[redacted]" takes the value of the n-th stored item with that key; a bare
    # REDACTED item the n-th stored bare item. Anything else is the client's new value.
    old_items: dict[str | None, list[str]] = {}
    for item in old_query.split("&"):
        key, eq, _ = item.partition("=")
        old_items.setdefault(key if eq else None, []).append(item)
    used: dict[str | None, int] = {}
    out = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        slot: str | None = key if eq else None
        if (value if eq else item) == REDACTED and used.get(slot, 0) < len(old_items.get(slot, [])):
            out.append(old_items[slot][used.get(slot, 0)])
            used[slot] = used.get(slot, 0) + 1
        else:
            out.append(item)
    return "&".join(out)


def _restore_url(url: str, old_url: str) -> str:
    parts, old = _split_url(url), _split_url(old_url)
    if parts is None or old is None or REDACTED not in url:
        return url
    userinfo = parts.userinfo
    if userinfo is not None and old.userinfo is not None:
        user, colon, password = userinfo.partition(":")
        _, old_colon, old_password = old.userinfo.partition(":")
        if userinfo == REDACTED:
            userinfo = old.userinfo
        elif colon and password == REDACTED and old_colon:
            userinfo = f"{user}:{old_password}"
    query = parts.query
    if query is not None and old.query is not None:
        query = _restore_query(query, old.query)
    return replace(parts, userinfo=userinfo, path=_restore_path(parts, old), query=query).join()


def restore_redacted(changes: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """A client that sends back what GET showed it must not overwrite the stored secrets with the
    placeholder: every REDACTED piece (a header value, body, send, send_hex, the URL's user info,
    a path segment or a query value) is taken from the stored definition; pieces the client changed are kept."""
    out = dict(changes)
    headers = out.get("headers")
    if isinstance(headers, dict):
        old = stored.get("headers") or {}
        old_folded = {k.lower(): v for k, v in old.items()}
        out["headers"] = {
            k: (old.get(k, old_folded.get(k.lower())) if v == REDACTED and k.lower() in old_folded else v)
            for k, v in headers.items()
        }
    for name in SECRET_FIELDS:
        if out.get(name) == REDACTED and isinstance(stored.get(name), str):
            out[name] = stored[name]
    url, old_url = out.get("url"), stored.get("url")
    if isinstance(url, str) and isinstance(old_url, str):
        out["url"] = _restore_url(url, old_url)
    return out


# A probe's result may quote a URL it was sent to (a redirect's target keeps the query string).
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+", re.I)


def public_text(text: str) -> str:
    """`text` with every http(s) URL in it shown as `public_url` shows an endpoint's."""
    if "://" not in text:  # almost every error text: skip the regex
        return text
    return _URL_IN_TEXT.sub(lambda m: public_url(Protocol.HTTP, m[0]), text)


def public_check(check: dict[str, Any]) -> dict[str, Any]:
    """A check result as the API shows it: its error text and `details["url"]` without secrets."""
    out = dict(check)
    if isinstance(out.get("error"), str):
        out["error"] = public_text(out["error"])
    details = out.get("details")
    if isinstance(details, dict) and isinstance(details.get("url"), str):
        out["details"] = {**details, "url": public_text(details["url"])}
    return out
