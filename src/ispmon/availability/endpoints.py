"""The endpoint definition: one validated model shared by the REST API, the config file and the CLI.

Field names follow the seed (`url`, `protocol`, `check_interval`, `timeout`, `retries`,
`expected_status_code`, `expected_response_pattern`, `is_active`). The target is always `url`:

* http / https: ``http(s)://host[:port]/path``
* tcp / udp:    ``host:port`` (also ``[v6addr]:port`` or ``tcp://host:port``); `port` fills a missing port
* icmp:         a host name or address
* dns:          ``dns://<resolver>[:port]/<name>?type=<rrtype>``

Validation happens here, once, and every error names the field it is about.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from yarl import URL

# The redaction helpers are re-exported here, where callers have always imported them from.
from ispmon.availability.redaction import PUBLIC_HEADERS, SECRET_FIELDS, public_url
from ispmon.availability.redaction import REDACTED as REDACTED
from ispmon.availability.redaction import redact_url as redact_url
from ispmon.availability.redaction import restore_redacted as restore_redacted
from ispmon.availability.slugs import SLUG_RE as SLUG_RE
from ispmon.availability.slugs import SLUG_SCHEMA as SLUG_SCHEMA
from ispmon.availability.slugs import numbered_slug as numbered_slug
from ispmon.availability.slugs import slugify as slugify
from ispmon.models import Criticality, Protocol
from ispmon.validation import unstorable_text

_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

DNS_RRTYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA", "NAPTR")
DNS_RCODES = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Fields that only mean something for some protocols; setting one elsewhere is an error that names it.
PROTOCOL_FIELDS: dict[str, frozenset[Protocol]] = {
    "method": frozenset({Protocol.HTTP, Protocol.HTTPS}),
    "headers": frozenset({Protocol.HTTP, Protocol.HTTPS}),
    "body": frozenset({Protocol.HTTP, Protocol.HTTPS}),
    "expected_status_code": frozenset({Protocol.HTTP, Protocol.HTTPS}),
    "follow_redirects": frozenset({Protocol.HTTP, Protocol.HTTPS}),
    "verify_tls": frozenset({Protocol.HTTPS}),
    "cert_expiry_days": frozenset({Protocol.HTTPS}),
    "expected_response_pattern": frozenset({Protocol.HTTP, Protocol.HTTPS, Protocol.TCP, Protocol.UDP}),
    "send": frozenset({Protocol.TCP, Protocol.UDP}),
    "send_hex": frozenset({Protocol.TCP, Protocol.UDP}),
    "allow_no_reply": frozenset({Protocol.UDP}),
    "expected_answers": frozenset({Protocol.DNS}),
    "expected_rcode": frozenset({Protocol.DNS}),
    "packet_count": frozenset({Protocol.ICMP}),
    "packet_interval": frozenset({Protocol.ICMP}),
    "loss_threshold_percent": frozenset({Protocol.ICMP}),
    "port": frozenset({Protocol.TCP, Protocol.UDP}),
}

MAX_PATTERN_LENGTH = 1000
# Echo requests per ICMP check: Smokeping's default of 20 pings per step is the most a check sends.
MAX_PACKET_COUNT = 20


def is_hostname(value: str) -> bool:
    """A DNS host name (RFC 1123 labels) or an IPv4/IPv6 address."""
    if not value or len(value) > 253:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    # An all-numeric dotted name that is not a valid address (999.1.1.1) is a typo, not a host name.
    if all(label.isdigit() for label in labels):
        return False
    return all(_LABEL_RE.match(label) for label in labels)


@dataclass(frozen=True, slots=True)
class Target:
    """The parsed `url`, so probes never parse strings on the hot path."""

    host: str
    port: int | None = None
    # dns only: the name to query and its record type
    qname: str | None = None
    rrtype: str | None = None


def _split_host_port(text: str, field: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{field}: unterminated '[' in IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{field}: expected ':port' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None  # a bare host, or an unbracketed IPv6 address
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{field}: port must be a number from 1 to 65535, got {port_text!r}")
        port = int(port_text)
    if not is_hostname(host):
        raise ValueError(f"{field}: {host!r} is not a valid host name or IP address")
    return host, port


def parse_target(protocol: Protocol, url: str, port: int | None = None) -> Target:
    """Parse `url` for `protocol`; raises ValueError with a message that starts with the field name."""
    if any(c.isspace() for c in url):
        raise ValueError("url: must not contain white space")
    if protocol in (Protocol.HTTP, Protocol.HTTPS):
        try:
            parsed = URL(url)
        except ValueError as exc:
            raise ValueError(f"url: not a valid URL ({exc})") from None
        if parsed.scheme != protocol.value:
            raise ValueError(f"url: protocol {protocol.value} needs a {protocol.value}:// URL")
        try:
            host, parsed_port = parsed.host, parsed.port
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        if not host or not is_hostname(host):
            raise ValueError(f"url: {host!r} is not a valid host name or IP address")
        return Target(host=host, port=parsed_port)
    if protocol is Protocol.DNS:
        if url[: len("dns://")].lower() != "dns://":  # schemes are case-insensitive (RFC 3986)
            raise ValueError("url: a dns endpoint needs dns://<resolver>[:port]/<name>?type=<rrtype>")
        rest = url[len("dns://") :]
        authority, _, path_query = rest.partition("/")
        host, rport = _split_host_port(authority, "url")
        name, _, query = path_query.partition("?")
        name = name.rstrip(".")
        if not name or not all(_LABEL_RE.match(label) for label in name.split(".")):
            raise ValueError(f"url: {name!r} is not a valid name to query")
        rrtype = "A"
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key != "type":
                raise ValueError(f"url: unknown query parameter {key!r} (only 'type' is allowed)")
            rrtype = value.upper()
        if rrtype not in DNS_RRTYPES:
            raise ValueError(f"url: record type {rrtype!r} is not one of {', '.join(DNS_RRTYPES)}")
        return Target(host=host, port=rport or 53, qname=name, rrtype=rrtype)
    scheme = f"{protocol.value}://"
    text = url[len(scheme) :] if url[: len(scheme)].lower() == scheme else url
    if "/" in text or "?" in text:
        raise ValueError(
            f"url: a {protocol.value} target is host" + (":port" if protocol != Protocol.ICMP else "")
        )
    host, parsed_port = _split_host_port(text, "url")
    if protocol is Protocol.ICMP:
        if parsed_port is not None:
            raise ValueError("url: an icmp target has no port")
        return Target(host=host)
    final_port = parsed_port or port
    if final_port is None:
        raise ValueError(f"url: a {protocol.value} target needs a port (host:port, or the port field)")
    return Target(host=host, port=final_port)


def infer_protocol(url: str) -> Protocol | None:
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() in Protocol.__members__.values():
        return Protocol(scheme.lower())
    return None


class _SharedFieldsSet(set[str]):
    """A `__pydantic_fields_set__` shared by every definition built with the same fields. A set
    (pydantic-core's dumps want one), but any change raises: it belongs to many models."""

    def _shared(self, *_: Any, **__: Any) -> None:
        raise TypeError("this fields set is shared between endpoint definitions")

    add = discard = remove = pop = clear = update = _shared  # type: ignore[assignment]
    difference_update = intersection_update = symmetric_difference_update = _shared  # type: ignore[assignment]
    __ior__ = __iand__ = __isub__ = __ixor__ = _shared  # type: ignore[assignment]

    def __copy__(self) -> set[str]:
        return set(self)  # a copy (pydantic's model_copy) is a plain set its new owner may change

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self))


# Interned `__pydantic_fields_set__` values of EndpointSpec (a handful of distinct ones in practice).
_FIELDS_SETS: dict[frozenset[str], _SharedFieldsSet] = {}


class EndpointDefaults(BaseModel):
    """Settings-derived defaults, passed as validation context so the model stays free of globals."""

    check_interval: float = 60.0
    timeout: float = 5.0
    retries: int = 3


class EndpointSpec(BaseModel):
    """A monitored endpoint, as created through the API, the config file or `AvailabilityService`."""

    # No global str_strip_whitespace: payloads and patterns are byte-exact ("QUIT\r\n", "^220 ").
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        description="Slug id, e.g. 'api-gateway'; derived from name when omitted",
        json_schema_extra=SLUG_SCHEMA,
    )
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    url: str = Field(min_length=1, max_length=2048, description="The target; its form depends on protocol")
    protocol: Protocol
    port: int | None = Field(default=None, ge=1, le=65535, description="tcp/udp: port when url has none")
    check_interval: float = Field(ge=1.0, le=86400.0, description="Seconds between checks")
    timeout: float = Field(gt=0.0, le=300.0, description="Seconds per attempt; must be < check_interval")
    retries: int = Field(ge=0, le=10, description="Extra attempts within one check before it is DOWN")
    is_active: bool = True
    criticality: Criticality = Criticality.MEDIUM
    tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] = Field(
        default_factory=list, max_length=32
    )
    # Alerting: while `parent` (e.g. the upstream router's ICMP check) is down, this endpoint's
    # outages are recorded and marked but nobody is paged for them. Canaries are the monitoring
    # host's own uplink checks: when all of them fail, the host itself is cut off.
    parent: str | None = Field(
        default=None, description="Endpoint id this one depends on", json_schema_extra=SLUG_SCHEMA
    )
    canary: bool = Field(default=False, description="An uplink check of the monitoring host itself")
    degraded_response_time_ms: float | None = Field(
        default=None, gt=0, description="DEGRADED when the response time (ICMP: average RTT) is above this"
    )
    # The public status page (/status, web/status.py) shows only endpoints marked public, under
    # public_name when given, in public_group; never their id, URL, tags or error texts.
    public: bool = Field(default=False, description="Shown on the public status page (/status)")
    public_name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Its name on the status page (default: name)"
    )
    public_group: str | None = Field(
        default=None,
        description="Its group on the status page, /status/{group} (a slug; default 'services')",
        json_schema_extra=SLUG_SCHEMA,
    )
    # Several agents (agents/): the locations (ISPMON_LOCATION) it is checked from, one agent each,
    # and how many of them must see it DOWN, verified, within one interval before an outage opens.
    locations: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")]] | None = Field(
        default=None, min_length=1, max_length=32, description="Locations it is checked from (default: all)"
    )
    confirm_locations: int = Field(
        default=1, ge=1, le=32, description="Locations that must see it DOWN before an outage opens"
    )
    # http / https
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    body: str | None = Field(default=None, max_length=65536)
    expected_status_code: int | list[int] | None = Field(
        default=None, description="Accepted status code(s); default: any 2xx or 3xx"
    )
    follow_redirects: bool = True
    verify_tls: bool = True
    cert_expiry_days: int = Field(
        default=14, ge=0, le=3650, description="DEGRADED when the cert expires sooner"
    )
    # http / https / tcp / udp
    expected_response_pattern: str | None = Field(
        default=None, max_length=MAX_PATTERN_LENGTH, description="Regex searched in the body / reply"
    )
    # tcp / udp
    send: str | None = Field(default=None, max_length=65536, description="Text payload to send")
    send_hex: str | None = Field(default=None, max_length=131072, description="Binary payload as hex")
    allow_no_reply: bool = Field(default=False, description="udp: silence counts as UP")
    # dns
    expected_answers: list[str] = Field(default_factory=list, max_length=100)
    expected_rcode: Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"] = "NOERROR"
    # icmp
    packet_count: int = Field(default=3, ge=1, le=MAX_PACKET_COUNT)
    packet_interval: float = Field(default=0.2, ge=0.01, le=10.0)
    loss_threshold_percent: float = Field(default=20.0, ge=0, le=100, description="DEGRADED above this loss")

    _target: Target = PrivateAttr()
    _pattern: Any = PrivateAttr(default=None)
    _payload: bytes | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        bad = unstorable_text(data)
        if bad:
            raise ValueError(f"{bad}: must not contain NUL characters or invalid UTF-8")
        data = dict(data)
        defaults = (info.context or {}).get("defaults") or EndpointDefaults()
        for key in ("check_interval", "timeout", "retries"):
            if data.get(key) is None:
                data[key] = getattr(defaults, key)
        if data.get("protocol") is None and isinstance(data.get("url"), str):
            inferred = infer_protocol(data["url"])
            if inferred is None:
                raise ValueError(
                    f"protocol: required: cannot tell it from url {data['url'][:100]!r} "
                    "(only http://, https://, dns://, tcp://, udp:// and icmp:// URLs say it)"
                )
            data["protocol"] = inferred
        if data.get("id") is None and isinstance(data.get("name"), str):
            data["id"] = slugify(data["name"])
        return data

    @field_validator("id", "name", "url", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not SLUG_RE.match(value):
            raise ValueError(
                "must be a slug: 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"
            )
        return value

    @field_validator("parent")
    @classmethod
    def _check_parent(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not SLUG_RE.match(value):
            raise ValueError("must be the id (a slug) of another endpoint")
        if value == info.data.get("id"):
            raise ValueError("an endpoint cannot be its own parent")
        return value

    @field_validator("public_group")
    @classmethod
    def _check_public_group(cls, value: str | None) -> str | None:
        if value is not None and not SLUG_RE.match(value):
            raise ValueError("must be a slug (1-64 lowercase letters, digits, '-' or '_'): it is a URL path")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}", key):
                raise ValueError(f"header name {key!r} is not a valid HTTP token")
            if any(c in val for c in "\r\n\0"):
                raise ValueError(f"header {key!r} value must not contain CR, LF or NUL")
        return value

    @field_validator("expected_status_code")
    @classmethod
    def _check_codes(cls, value: int | list[int] | None) -> int | list[int] | None:
        codes = [value] if isinstance(value, int) else (value or [])
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one status code")
        return value

    @field_validator("send_hex")
    @classmethod
    def _check_hex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError("must be an even number of hex digits (spaces allowed)") from None
        return value

    @field_validator("expected_answers")
    @classmethod
    def _check_answers(cls, value: list[str]) -> list[str]:
        for answer in value:
            if not answer or len(answer) > 1024:
                raise ValueError("each expected answer must be 1-1024 characters")
        return value

    @model_validator(mode="after")
    def _check_consistency(self, info: ValidationInfo) -> EndpointSpec:
        if self.timeout >= self.check_interval:
            raise ValueError(
                f"timeout: must be less than check_interval ({self.timeout:g} >= {self.check_interval:g})"
            )
        if self.protocol is Protocol.ICMP and (
            self.packet_count * self.packet_interval + self.timeout > self.check_interval
        ):
            # The probe squeezes its packets into `timeout`; this keeps the configured spacing too
            # within one check's interval, so a check never runs into the next one.
            raise ValueError(
                f"packet_count: {self.packet_count} packets {self.packet_interval:g} s apart plus the "
                f"{self.timeout:g} s timeout do not fit in check_interval ({self.check_interval:g} s)"
            )
        for name, protocols in PROTOCOL_FIELDS.items():
            if name in self.model_fields_set and self.protocol not in protocols:
                allowed = ", ".join(sorted(p.value for p in protocols))
                raise ValueError(f"{name}: does not apply to protocol {self.protocol.value} (only {allowed})")
        if self.locations is not None:
            if len(set(self.locations)) != len(self.locations):
                raise ValueError("locations: each location once")
            if self.confirm_locations > len(self.locations):
                raise ValueError(
                    f"confirm_locations: {self.confirm_locations} is more than the "
                    f"{len(self.locations)} locations it is checked from"
                )
        if self.send is not None and self.send_hex is not None:
            raise ValueError("send_hex: give either send or send_hex, not both")
        if self.send_hex is not None:
            self._payload = bytes.fromhex(self.send_hex)
        elif self.send is not None:
            self._payload = self.send.encode()
        if self.protocol is Protocol.UDP and self._payload is None:
            raise ValueError("send: a udp endpoint needs a payload (send or send_hex)")
        self._target = parse_target(self.protocol, self.url, self.port)
        if not (info.context or {}).get("stored"):
            self._check_one_credential()
        if self.expected_response_pattern is not None:
            try:
                self._pattern = regex.compile(self.expected_response_pattern.encode())
            except regex.error as exc:
                raise ValueError(f"expected_response_pattern: invalid regular expression: {exc}") from None
        # Which fields were given is a set of a few names per definition, ~730 bytes each, and
        # definitions built alike give the same set: share one (the model is frozen, so pydantic
        # never adds to it; the shared set makes any attempt fail loudly).
        key = frozenset(self.__pydantic_fields_set__)
        shared = _FIELDS_SETS.get(key)
        if shared is None:
            shared = _FIELDS_SETS[key] = _SharedFieldsSet(key)
        object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self

    def _check_one_credential(self) -> None:
        # aiohttp refuses to send a request with both (every check would end UNKNOWN with "Cannot
        # combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"), so the
        # definition is refused here, naming both places.
        if self.protocol not in (Protocol.HTTP, Protocol.HTTPS):
            return
        header = next((k for k in self.headers if k.lower() == "authorization"), None)
        parsed = URL(self.url)
        if header is None or (parsed.user is None and parsed.password is None):
            return
        message = "give credentials either in url (user:password@) or in headers.{header}, not both"
        raise ValidationError.from_exception_data(
            type(self).__name__,
            [
                InitErrorDetails(
                    type=PydanticCustomError("value_error", message, {"header": header}),
                    loc=loc,
                    input=value,
                )
                for loc, value in ((("url",), REDACTED), (("headers", header), REDACTED))
            ],
        )

    # The three properties read pydantic's private-attribute dict directly: `self._x` on a model
    # misses the instance dict and falls back to BaseModel.__getattr__, which showed up at ~4 % of
    # the daemon's CPU under py-spy, since every check reads them.
    @property
    def target(self) -> Target:
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        return private["_target"]  # type: ignore[no-any-return]

    @property
    def pattern(self) -> Any:
        """The compiled `expected_response_pattern` (bytes pattern, `regex` module) or None."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        return private["_pattern"]

    @property
    def payload(self) -> bytes | None:
        """`send` or `send_hex` as bytes (computed once at validation)."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        return private["_payload"]  # type: ignore[no-any-return]

    def accepts_status(self, code: int) -> bool:
        if self.expected_status_code is None:
            return 200 <= code < 400
        if isinstance(self.expected_status_code, int):
            return code == self.expected_status_code
        return code in self.expected_status_code

    def public_dict(self) -> dict[str, Any]:
        """The definition as the API returns it: every field that applies to this protocol, with
        every secret (see `public_url`, PUBLIC_HEADERS, SECRET_FIELDS) replaced by REDACTED."""
        data = self.model_dump(mode="json")
        out = {
            k: v for k, v in data.items() if k not in PROTOCOL_FIELDS or self.protocol in PROTOCOL_FIELDS[k]
        }
        out["url"] = public_url(self.protocol, self.url)
        if "headers" in out:
            out["headers"] = {
                k: (v if k.lower() in PUBLIC_HEADERS else REDACTED) for k, v in self.headers.items()
            }
        for name in SECRET_FIELDS:
            if out.get(name) is not None:
                out[name] = REDACTED
        return out

    def stored_dict(self) -> dict[str, Any]:
        """The definition as stored: only what differs from the defaults, so it validates again as is."""
        return self.model_dump(mode="json", exclude_defaults=True)


def build_endpoint(
    data: dict[str, Any], defaults: EndpointDefaults | None = None, *, stored: bool = False
) -> EndpointSpec:
    """Validate a definition, filling check_interval/timeout/retries from `defaults` when absent.

    `stored=True` reads a row back from the database: rules added after it was written
    (credentials in both url and an Authorization header) do not apply, so such a row stays
    readable through the API and can be fixed with a PUT (which validates in full)."""
    context = {"defaults": defaults or EndpointDefaults(), "stored": stored}
    return EndpointSpec.model_validate(data, context=context)


# What is probed. When one of these changes, what was known about the endpoint (its status, its
# failure counts, its open outage) is about another target; criteria such as expected_status_code
# or a timeout are not in it: a stricter check of the same target keeps its history.
TARGET_FIELDS = ("protocol", "url", "port")


def target_key(definition: Any) -> tuple[str | None, ...]:
    """The target of a definition (an EndpointSpec, the monitor's CompactSpec, or a stored form),
    comparable across all three."""
    data = definition if isinstance(definition, dict) else definition.stored_dict()
    return tuple(
        None if data.get(f) is None else str(data[f]).lower() if f == "protocol" else str(data[f])
        for f in TARGET_FIELDS
    )
