"""Notification channels: a name and one or more apprise URLs, validated, classified and redacted.

Channel URLs carry credentials (SMTP passwords, webhook tokens, API keys). Everything that leaves
this module for a log, an error or the API uses `ChannelTarget.redacted` (`privacy_form`: host and
user shown, every secret masked); the raw `url` is only handed to the notifier and stored in the
database. `redact_secrets_in` scrubs free text (apprise error messages, exception text) of every
credential-bearing piece of the URLs involved.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import apprise
from apprise.manager_plugins import NotificationManager

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
MAX_URLS = 20
SHORT_LIMIT = 160
REDACTED = "[redacted]"
KINDS = ("email", "sms", "slack", "teams", "telegram", "webhook", "other")

# apprise schema -> kind, for the kinds that a plugin's limits cannot tell apart.
_KIND_BY_SCHEMA: dict[str, str] = {
    **dict.fromkeys(
        (
            "mailto",
            "mailtos",
            "sendgrid",
            "mailgun",
            "ses",
            "sparkpost",
            "smtp2go",
            "resend",
            "brevo",
            "postmark",
            "mailersend",
            "o365",
            "azure",
            "sendpulse",
        ),
        "email",
    ),
    "slack": "slack",
    # apprise 2.x dropped msteams:// in favour of Power Automate workflows (what Teams now offers).
    **dict.fromkeys(("msteams", "workflow", "workflows"), "teams"),
    "tgram": "telegram",
    **dict.fromkeys(("json", "jsons", "form", "forms", "xml", "xmls"), "webhook"),
}
# SMS gateways whose per-message limit is above 160 (concatenated SMS) but that are still SMS.
_SMS_SCHEMAS = frozenset(
    (
        "twilio",
        "sns",
        "clicksend",
        "msgbird",
        "vonage",
        "nexmo",
        "46elks",
        "elks",
        "atalk",
        "bulksms",
        "bulkvs",
        "burstsms",
        "kudosity",
        "clickatell",
        "d7sms",
        "freemobile",
        "httpsms",
        "infobip",
        "kavenegar",
        "msg91",
        "plivo",
        "ringc",
        "serwersms",
        "seven",
        "sfr",
        "sinch",
        "smsc",
        "smseagle",
        "smseagles",
        "smsmgr",
        "smsmanager",
        "smstunnel",
        "telnyx",
        "voipms",
        "cm",
        "octopush",
        "telesign",
        "kaleyra",
        "klr",
        "exotel",
        "eight00com",
        "smpp",
        "smpps",
        "mobilemessage",
        "mobilemsg",
        "notifyre",
    )
)
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# A phone number or an e-mail address is where a message goes, not a secret; the redacted form
# keeps them so an operator can tell targets apart.
_ADDRESS_RE = re.compile(r"^(?:\+?[0-9][0-9 ().-]{4,}|[^@/\s]+@[^@/\s]+\.[^@/\s]+)$")

_MANAGER = NotificationManager()
_apprise_log = logging.getLogger("apprise")


class ChannelError(ValueError):
    """A channel definition is invalid. The message names the field and never holds a credential."""


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    url: str = field(repr=False)
    kind: str
    short: bool
    redacted: str
    fingerprint: str


@dataclass(frozen=True)
class Channel:
    name: str
    targets: tuple[ChannelTarget, ...]
    source: str = "api"

    @property
    def kinds(self) -> list[str]:
        return sorted({t.kind for t in self.targets})

    @property
    def urls(self) -> list[str]:
        """The raw URLs, for storing. Secret: never log or return them."""
        return [t.url for t in self.targets]

    @property
    def notification_type(self) -> str:
        kinds = self.kinds
        return kinds[0] if len(kinds) == 1 else "mixed"

    def public_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "urls": [t.redacted for t in self.targets],
            "kinds": self.kinds,
            "notification_type": self.notification_type,
        }


def fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _secret_pieces(url: str) -> set[str]:
    """Substrings of `url` that may be credentials: the URL, user, password, long path/query parts."""
    pieces = {url}
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:  # e.g. an invalid port: fall back to the whole URL and its path-like parts
        parts, user, password = None, None, None
    # A one- or two-character user or password is no secret worth mangling every text for.
    for value in (user, password):
        if value and len(value) >= 3:
            pieces.add(value)
    if parts is not None:
        path, query = parts.path, parts.query
    else:
        _, _, rest = url.partition("://")
        path, _, query = rest.partition("?")
    pieces.update(seg for seg in path.split("/") if len(seg) > 5)
    pieces.update(v for _, v in parse_qsl(query, keep_blank_values=True) if len(v) > 5)
    # The same piece can appear decoded or encoded in a message.
    expanded = set(pieces)
    for p in pieces:
        expanded.update({unquote(p), quote(p, safe=""), quote(unquote(p), safe="")})
    return {p for p in expanded if p}


def redact_secrets_in(text: str, targets: Iterable[ChannelTarget]) -> str:
    """`text` with every credential-bearing piece of the targets' URLs replaced by [redacted]."""
    pieces: set[str] = set()
    for target in targets:
        pieces |= _secret_pieces(target.url)
    # Longest first, so a password inside the full URL does not leave the URL's other parts behind.
    for piece in sorted(pieces, key=len, reverse=True):
        if piece not in text:
            continue
        if len(piece) > 5:
            text = text.replace(piece, REDACTED)
        else:
            # A short user name ("hook") must not eat the middle of ordinary words ("webhook").
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", REDACTED, text)
    return text


MASK = "****"
_URL_PARTS_RE = re.compile(r"^([^:/?#]*)://([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$", re.DOTALL)
_HOSTNAME_RE = re.compile(r"^(?:localhost|[^.:]+(?:\.[^.:]+)+|\[[0-9A-Fa-f:.]+\])$")


def _url_parts(url: str) -> tuple[str, str, str, str, str]:
    """(scheme, authority, path, "?query", "#fragment") without decoding anything (apprise URLs
    are often not valid RFC 3986 URLs, and urlsplit refuses some of them)."""
    match = _URL_PARTS_RE.match(url)
    if match is None:
        return "", "", url, "", ""
    scheme, netloc, path, query, fragment = match.groups()
    return scheme, netloc, path, query or "", fragment or ""


def _split_netloc(netloc: str) -> tuple[str | None, str | None, str]:
    """(user, password, host[:port]) of a URL's authority; user and password None when absent."""
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), hostport


def _host(hostport: str) -> str | None:
    """The host of host[:port], lower-cased; None when it is no host:port at all, e.g. the
    ``bot-id:token`` that tgram:// puts where the host goes."""
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        return host.lower() if bracket and (not port or (port[0] == ":" and port[1:].isdigit())) else None
    head, colon, port = hostport.rpartition(":")
    if not colon:
        return hostport.lower() or None
    return head.lower() if head and port.isdigit() else None


def _privacy_secrets(url: str) -> set[str]:
    """What must never appear in a channel's privacy form: the password, and path segments and
    query values long enough to be tokens (a json:// webhook's path token, an ntfy topic), which
    apprise itself treats as public. Addresses (e-mail, phone) and the user name are not secrets:
    operators need them to tell targets apart. The password counts even when it looks like an
    address, and makes the user name secret too when the two are the same."""
    user, password, _ = _split_netloc(_url_parts(url)[1])
    public = {url} | ({unquote(user)} if user and user != password else set())
    secrets: set[str] = set()
    for piece in _secret_pieces(url):
        plain = unquote(piece)
        if plain in public or (_ADDRESS_RE.match(plain) and not (password and plain == unquote(password))):
            continue
        secrets.add(piece)
    if password:
        secrets |= {password, unquote(password), quote(unquote(password), safe="")}
    # Shorter fragments (a 2-character password, what decoding leaves of a short one) would mask
    # half of every URL and are no secret worth it.
    return {p for p in secrets if len(p) >= 3}


def _holds_secret(text: str, secrets: set[str]) -> bool:
    decoded = unquote(text)
    return any(p in text or p in decoded for p in secrets)


def _mask_parts(text: str, secrets: set[str], host: str | None) -> str:
    """`text` (a URL) with each component that holds a secret masked on its own, so the host and
    the plugin's own parameters stay readable. The host is kept when it is `host`, the URL's own
    host (where the channel connects, which a secret that happens to match part of it must not
    hide); anything else in the host's place (apprise's abbreviation of a token) is checked."""
    scheme, netloc, path, query, fragment = _url_parts(text)
    user, password, hostport = _split_netloc(netloc)
    if password is not None and password != MASK and _holds_secret(password, secrets):
        password = MASK
    if user is not None and _holds_secret(user, secrets):
        user = MASK
    if (host is None or _host(hostport) != host) and _holds_secret(hostport, secrets):
        hostport = MASK
    userinfo = "" if user is None else user + ("" if password is None else f":{password}") + "@"
    path = "/".join(MASK if _holds_secret(segment, secrets) else segment for segment in path.split("/"))
    if query:
        items = []
        for item in query[1:].split("&"):
            key, eq, value = item.partition("=")
            if _holds_secret(key, secrets):
                items.append(MASK)
            else:
                items.append(f"{key}={MASK}" if eq and _holds_secret(value, secrets) else item)
        query = "?" + "&".join(items)
    if fragment and _holds_secret(fragment, secrets):
        fragment = f"#{MASK}"
    return f"{scheme}://{userinfo}{hostport}{path}{query}{fragment}"


def _fallback_form(url: str, scheme: str, secrets: set[str]) -> str:
    """Our own privacy form, when apprise's fails: the user, and the host if it looks like one
    (a name with dots, an IP address, localhost: not a token in the host's place); the password
    and everything after the host masked."""
    _, netloc, path, query, fragment = _url_parts(url)
    user, password, hostport = _split_netloc(netloc)
    host = _host(hostport)
    if host is None or not _HOSTNAME_RE.match(host if ":" not in host else f"[{host}]"):
        hostport = MASK
    if user is not None and _holds_secret(user, secrets):
        user = MASK
    userinfo = "" if user is None else user + ("" if password is None else f":{MASK}") + "@"
    tail = f"/{MASK}" if path.strip("/") or query or fragment else ""
    return f"{scheme}://{userinfo}{hostport}{tail}"


def privacy_form(url: str, plugin: Any, scheme: str) -> str:
    """apprise's privacy form of `url` (``json://user:****@host/...``): the host and the user
    shown, the password masked, and (beyond apprise) long path segments and query values masked
    too, since apprise considers a webhook's path token public. If a secret still shows after
    that, or the plugin cannot print itself, the fallback: scheme, user and host, the rest masked.
    Never only the scheme: an operator must be able to tell which host a channel pages."""
    secrets = _privacy_secrets(url)
    host = _host(_split_netloc(_url_parts(url)[1])[2])
    try:
        text = _mask_parts(str(plugin.url(privacy=True)), secrets, host)
    except Exception:  # a plugin bug must not make a channel unusable
        return _fallback_form(url, scheme, secrets)
    # Belt and braces: what is left outside a kept host must hold no secret.
    shown_scheme, netloc, path, query, fragment = _url_parts(text)
    user, password, hostport = _split_netloc(netloc)
    shown = [shown_scheme, user or "", password or "", path, query, fragment]
    if host is None or _host(hostport) != host:
        shown.append(hostport)
    if any(_holds_secret(part, secrets) for part in shown):
        return _fallback_form(url, scheme, secrets)
    return text


def _protocols(plugin: Any) -> set[str]:
    names: set[str] = set()
    for attr in ("protocol", "secure_protocol"):
        value = getattr(plugin, attr, None)
        if isinstance(value, str):
            names.add(value.lower())
        elif isinstance(value, list | tuple):
            names.update(v.lower() for v in value if isinstance(v, str))
    return names


def _classify(plugin: Any) -> tuple[str, bool]:
    """(kind, short). SMS: a plugin whose body limit is one SMS, or a text-only SMS gateway."""
    body_max = int(getattr(plugin, "body_maxlen", 32768) or 32768)
    title_max = int(getattr(plugin, "title_maxlen", 250) or 0)
    protos = _protocols(plugin)
    short = body_max <= SHORT_LIMIT
    if short or (title_max == 0 and protos & _SMS_SCHEMAS):
        return "sms", short
    for proto in sorted(protos):
        if proto in _KIND_BY_SCHEMA:
            return _KIND_BY_SCHEMA[proto], short
    return "other", short


class _ThreadCapture(logging.Handler):
    """Collects apprise log messages emitted by this thread only (sends in worker threads log too)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def _capture_apprise_log() -> Iterator[_ThreadCapture]:
    handler = _ThreadCapture()
    _apprise_log.addHandler(handler)
    try:
        yield handler
    finally:
        _apprise_log.removeHandler(handler)


def _invalid(where: str, detail: str) -> ChannelError:
    return ChannelError(f"{where}: not a valid apprise URL ({detail})")


def parse_target(url: str, where: str = "url") -> ChannelTarget:
    if not isinstance(url, str) or not url.strip():
        raise ChannelError(f"{where}: must be a non-empty string")
    url = url.strip()
    match = _SCHEME_RE.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme is None:
        raise _invalid(where, "no scheme://")
    known = scheme in _MANAGER
    if known and not _MANAGER[scheme].enabled:
        raise _invalid(where, f"scheme '{scheme}' needs a package that is not installed")
    with _capture_apprise_log() as capture:
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        if not known:
            # apprise also accepts some native service URLs (https://hooks.slack.com/...); those
            # instantiate fine, so reaching here means the scheme is truly unknown.
            raise _invalid(where, f"scheme '{scheme}' is not supported")
        probe = ChannelTarget(url=url, kind="other", short=False, redacted="", fingerprint="")
        reasons = [m for m in capture.messages if not m.startswith(("Could not load", "Unparseable"))]
        reason = redact_secrets_in("; ".join(reasons), [probe]) if reasons else "missing or malformed parts"
        raise _invalid(where, f"{scheme}: {reason}")
    kind, short = _classify(plugin)
    return ChannelTarget(
        url=url,
        kind=kind,
        short=short,
        redacted=privacy_form(url, plugin, scheme),
        fingerprint=fingerprint(url),
    )


def parse_channel(name: str, urls: str | list[str], source: str = "api") -> Channel:
    # fullmatch: with match, "$" also matches before a final newline ("ops\n" would be a name).
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ChannelError(
            "name: must be 1-64 characters of a-z, 0-9, '_' and '-', starting and ending with a letter or digit"
        )
    if isinstance(urls, str):
        targets = [parse_target(urls, "url")]
    elif isinstance(urls, list | tuple):
        if not urls:
            raise ChannelError("urls: must not be empty")
        if len(urls) > MAX_URLS:
            raise ChannelError(f"urls: at most {MAX_URLS} URLs per channel")
        targets = [parse_target(u, f"urls[{i}]") for i, u in enumerate(urls)]
    else:
        raise ChannelError("urls: must be a URL string or a list of URL strings")
    return Channel(name=name, targets=tuple(targets), source=source)


class ChannelRegistry:
    """The channels in use: config-file ones and API ones, by name. Not thread-safe (one event loop)."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._channels: dict[str, Channel] = {c.name: c for c in channels}

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def names(self) -> list[str]:
        return sorted(self._channels)

    def all(self) -> list[Channel]:
        return [self._channels[n] for n in sorted(self._channels)]

    def set(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def remove(self, name: str) -> bool:
        return self._channels.pop(name, None) is not None

    def replace_source(self, source: str, channels: Iterable[Channel]) -> None:
        """Swap every channel of `source` (a config reload) for `channels`; others are kept."""
        kept = {n: c for n, c in self._channels.items() if c.source != source}
        kept.update({c.name: c for c in channels})
        self._channels = kept
