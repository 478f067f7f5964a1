"""A declared flow exporter (``[[flow_exporters]]``, ``POST /flows/exporters``): packets from any
other source address are dropped and counted."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ispmon.availability.endpoints import SLUG_RE


class ExporterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64)
    address: str  # the source address its export packets come from
    name: str = Field("", max_length=200)
    sampling: int | None = Field(None, ge=1, le=1_000_000)  # overrides what the exporter announces
    device_id: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.fullmatch(value):
            raise ValueError("must be a slug (lowercase letters, digits, '-', '_')")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value[:64]!r} is not an IP address") from None
        mapped = getattr(ip, "ipv4_mapped", None)
        return str(mapped or ip)
