"""NAS clients (the BRAS/BNG that send accounting) and the directory the listener matches them in.

A NAS is matched by the packet's source address: an exact address, or the most specific prefix
that contains it. Its shared `secret` verifies the request authenticator and signs responses and
CoA requests; it is never returned by the API nor logged (`SecretStr`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ispmon.availability.endpoints import SLUG_RE, slugify

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NasSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    address: str  # an address or a prefix (strict: no host bits set)
    secret: SecretStr
    coa_port: int = Field(3799, ge=1, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("id") is None and isinstance(data.get("name"), str):
                data = {**data, "id": slugify(data["name"], "nas")}
            if data.get("name") is None and isinstance(data.get("id"), str):
                data = {**data, "name": data["id"]}
        return data

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.fullmatch(value):
            raise ValueError("must be a slug: 1-64 of a-z, 0-9, '-', '_'")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise ValueError(f"must be an IP address or prefix: {str(exc)[:120]}") from None

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        # RFC 2865 3: the secret must not be empty; radclient and most NASes cap it at 128 octets.
        if not raw or len(raw.encode("utf-8", "surrogatepass")) > 128 or "\x00" in raw:
            raise ValueError("must be 1 to 128 octets, without NUL")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode") from None
        return value

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.address)

    def public(self) -> dict[str, Any]:
        """The API's view: everything but the secret."""
        return {"id": self.id, "name": self.name, "address": self.address, "coa_port": self.coa_port}


@dataclass(frozen=True, slots=True)
class Nas:
    """What the listener needs of a NAS, with the secret as bytes for the MD5 maths."""

    id: str
    network: IPNetwork
    secret: bytes
    coa_port: int


class NasDirectory:
    """Source address -> NAS. Exact addresses in a dict (the common case, one lookup per packet);
    prefixes scanned most specific first. Replaced as a whole when the NAS list changes."""

    def __init__(self, specs: list[NasSpec] | None = None) -> None:
        self._exact: dict[str, Nas] = {}
        self._prefixes: list[Nas] = []
        self.replace(specs or [])

    def replace(self, specs: list[NasSpec]) -> None:
        exact: dict[str, Nas] = {}
        prefixes: list[Nas] = []
        for spec in specs:
            network = spec.network
            nas = Nas(spec.id, network, spec.secret.get_secret_value().encode("utf-8"), spec.coa_port)
            if network.num_addresses == 1:
                exact[str(network.network_address)] = nas
            else:
                prefixes.append(nas)
        prefixes.sort(key=lambda n: n.network.prefixlen, reverse=True)
        self._exact, self._prefixes = exact, prefixes

    def __len__(self) -> int:
        return len(self._exact) + len(self._prefixes)

    def match(self, host: str) -> Nas | None:
        nas = self._exact.get(host)
        if nas is not None or not self._prefixes:
            return nas
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for candidate in self._prefixes:
            if address in candidate.network:
                return candidate
        return None
