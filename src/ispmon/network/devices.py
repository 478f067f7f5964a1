"""The SNMP device definition: one validated model shared by the REST API, the config file and the CLI.

A device is polled with SNMP v1, v2c (``community``) or v3 USM (``username``, ``auth_protocol`` +
``auth_key``, ``priv_protocol`` + ``priv_key``, optional ``context``). ``interfaces`` says which of
its interfaces to poll (a BRAS has thousands of sub-interfaces): regular expressions on ifName,
ifDescr or ifAlias to include or exclude, and ifType numbers to keep or drop. Communities and
keys are secrets: `public_dict` replaces them with REDACTED, they are never in a repr (so never in
a log line), and `restore_redacted` keeps the stored ones when a client sends the placeholder back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ispmon.availability.endpoints import REDACTED, SLUG_RE, is_hostname, slugify
from ispmon.errors import ConfigError
from ispmon.validation import error_list, unstorable_text

SECRET_FIELDS = ("community", "auth_key", "priv_key")
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
PRIV_PROTOCOLS = ("DES", "AES", "AES-192", "AES-256")
DEFAULT_PORT = 161
MAX_PATTERN_LENGTH = 500
# Common ifType names (IANAifType-MIB) an operator may write instead of the number.
IF_TYPES = {
    "other": 1,
    "ethernetCsmacd": 6,
    "ppp": 23,
    "softwareLoopback": 24,
    "propVirtual": 53,
    "tunnel": 131,
    "l2vlan": 135,
    "l3ipvlan": 136,
    "ieee8023adLag": 161,
    "mplsTunnel": 150,
    "bridge": 209,
}


def _canonical(value: Any, choices: tuple[str, ...], field: str) -> Any:
    """'sha256', 'SHA256' and 'SHA-256' all name SHA-256; anything else is refused naming `field`."""
    if not isinstance(value, str):
        return value
    wanted = value.strip().upper().replace("-", "").replace("_", "")
    for choice in choices:
        if choice.replace("-", "") == wanted or (choice == "SHA" and wanted == "SHA1"):
            return choice
    raise ValueError(f"must be one of {', '.join(choices)}, got {value[:40]!r}")


def split_address(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port); port 161 by default."""
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unterminated '[' in an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':port' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text
    if not is_hostname(host):
        raise ValueError(f"{host[:80]!r} is not a valid host name or IP address")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, got {port_text[:20]!r}")
    return host, int(port_text)


class InterfaceSelection(BaseModel):
    """Which interfaces of a device are polled. Empty ``include``/``types``: all of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: list[str] = Field(default_factory=list, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    types: list[int] = Field(default_factory=list, max_length=100)
    exclude_types: list[int] = Field(default_factory=list, max_length=100)

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if len(pattern) > MAX_PATTERN_LENGTH:
                raise ValueError(f"patterns must be at most {MAX_PATTERN_LENGTH} characters")
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"{pattern[:60]!r} is not a valid regular expression: {exc}") from None
        return value

    @field_validator("types", "exclude_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str) and not item.isdigit():
                if item not in IF_TYPES:
                    raise ValueError(f"unknown ifType {item[:40]!r} (use its IANAifType number)")
                item = IF_TYPES[item]
            out.append(item)
        return out

    @field_validator("types", "exclude_types")
    @classmethod
    def _type_range(cls, value: list[int]) -> list[int]:
        if any(not 1 <= t <= 2**31 - 1 for t in value):
            raise ValueError("ifType numbers are from 1 to 2147483647")
        return value

    def selects(self, name: str, descr: str, alias: str, if_type: int | None) -> bool:
        """Whether an interface with these IF-MIB values is polled."""
        if self.types and if_type not in self.types:
            return False
        if if_type is not None and if_type in self.exclude_types:
            return False
        texts = (name, descr, alias)
        # Patterns come from operators with write access; the timeout still keeps a catastrophic
        # one from stalling the poller's event loop.
        if self.include and not any(
            regex.search(p, t, timeout=0.05) for p in self.include for t in texts if t
        ):
            return False
        return not any(regex.search(p, t, timeout=0.05) for p in self.exclude for t in texts if t)


Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class DeviceSpec(BaseModel):
    """An SNMP device, as created through the API, the config file or `NetworkService`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Slug id, e.g. 'core-1'; derived from name when omitted")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    address: str = Field(description="host or IP address, optionally ':port' ([v6]:port); port 161 by default")
    version: Literal["1", "2c", "3"] = "2c"
    community: str | None = Field(None, min_length=1, max_length=255, repr=False)
    username: str | None = Field(None, min_length=1, max_length=32)
    auth_protocol: Literal["MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"] | None = None
    auth_key: str | None = Field(None, min_length=8, max_length=255, repr=False)
    priv_protocol: Literal["DES", "AES", "AES-192", "AES-256"] | None = None
    priv_key: str | None = Field(None, min_length=8, max_length=255, repr=False)
    context: str | None = Field(None, max_length=255)
    poll_interval: float = Field(60.0, ge=1, le=86400)
    discovery_interval: float = Field(3600.0, ge=60, le=7 * 86400)
    timeout: float = Field(2.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=10)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    interfaces: InterfaceSelection = Field(default_factory=InterfaceSelection)
    parent: str | None = Field(None, description="id of the endpoint this device is reached through")
    is_active: bool = True

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        bad = unstorable_text(data)
        if bad:
            raise ValueError(f"{bad}: must not contain NUL characters or unpaired surrogates")
        if data.get("id") is None and isinstance(data.get("name"), str) and data["name"].strip():
            data["id"] = slugify(data["name"], fallback="device")
        if isinstance(data.get("version"), int) and data["version"] in (1, 3):
            data["version"] = str(data["version"])
        if data.get("interfaces") == "all":
            data["interfaces"] = {}
        for field, choices in (("auth_protocol", AUTH_PROTOCOLS), ("priv_protocol", PRIV_PROTOCOLS)):
            try:
                data[field] = _canonical(data.get(field), choices, field)
            except ValueError as exc:
                raise ValueError(f"{field}: {exc}") from None
        return data

    @field_validator("id", "parent")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG_RE.fullmatch(value):
            raise ValueError("must be a slug: 1-64 of a-z, 0-9, '-', '_' (starting and ending with a letter or digit)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value.strip()

    @model_validator(mode="after")
    def _security(self) -> DeviceSpec:
        if self.timeout * (self.retries + 1) >= self.poll_interval:
            raise ValueError("timeout: timeout x (retries + 1) must be less than poll_interval")
        if self.version in ("1", "2c"):
            if self.community is None:
                raise ValueError(f"community: required for SNMP version {self.version}")
            for field in ("username", "auth_protocol", "auth_key", "priv_protocol", "priv_key", "context"):
                if getattr(self, field) is not None:
                    raise ValueError(f"{field}: only for SNMP version 3")
            return self
        if self.community is not None:
            raise ValueError("community: SNMP version 3 uses username and keys, not a community")
        if self.username is None:
            raise ValueError("username: required for SNMP version 3")
        if (self.auth_protocol is None) != (self.auth_key is None):
            missing = "auth_key" if self.auth_key is None else "auth_protocol"
            raise ValueError(f"{missing}: auth_protocol and auth_key go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            missing = "priv_key" if self.priv_key is None else "priv_protocol"
            raise ValueError(f"{missing}: priv_protocol and priv_key go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("auth_protocol: privacy (priv_protocol) needs authentication too (authPriv)")
        return self

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @property
    def security_level(self) -> str | None:
        """v3's USM level (noAuthNoPriv, authNoPriv, authPriv); None for v1/v2c."""
        if self.version != "3":
            return None
        if self.priv_protocol:
            return "authPriv"
        return "authNoPriv" if self.auth_protocol else "noAuthNoPriv"

    def stored_dict(self) -> dict[str, Any]:
        """The whole definition, secrets included (the database row and nothing else)."""
        return self.model_dump(mode="json", exclude_none=True)

    def public_dict(self) -> dict[str, Any]:
        """What the API shows: the stored definition with every secret replaced by REDACTED."""
        out = self.stored_dict()
        for field in SECRET_FIELDS:
            if field in out:
                out[field] = REDACTED
        return out


def restore_redacted(changes: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """A client that sends back what GET showed must not overwrite the stored secrets with REDACTED."""
    out = dict(changes)
    for field in SECRET_FIELDS:
        if out.get(field) == REDACTED and field in stored:
            out[field] = stored[field]
    return out


def build_device(data: Any) -> DeviceSpec:
    """Validate a definition (a dict from JSON or TOML); raises pydantic's ValidationError."""
    return DeviceSpec.model_validate(data)


def load_config_devices(items: list[Any], where: str, endpoint_ids: set[str]) -> list[DeviceSpec]:
    """The config file's ``[[devices]]``: every error names ``devices[i].field``; raises one ConfigError.

    ``parent`` must name an endpoint of the same file (devices are suppressed while it is down).
    """
    devices: list[DeviceSpec] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            device = build_device(item)
        except ValidationError as exc:
            fields: set[str] = set()
            for err in error_list(exc, prefix=f"devices[{index}]"):
                if err["field"] not in fields:
                    fields.add(err["field"])
                    errors.append(f"{where}{err['field']}: {err['message']}")
            continue
        if device.id in seen:
            errors.append(f"{where}devices[{index}].id: duplicate id {device.id!r} (also devices[{seen[device.id]}])")
            continue
        seen[device.id] = index
        if device.parent is not None and device.parent not in endpoint_ids:
            errors.append(f"{where}devices[{index}].parent: no endpoint {device.parent!r} in this file")
            continue
        devices.append(device)
    if errors:
        raise ConfigError(errors)
    return devices
