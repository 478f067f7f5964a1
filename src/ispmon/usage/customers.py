"""Customer (subscriber) definitions: plan, quota and period, thresholds, enforcement, identities.

One `CustomerSpec` is what the API body, a ``[[customers]]`` table of the config file and one item
of ``POST /customers/bulk`` hold. Identities (RADIUS ``User-Name``s and framed-IP ``prefixes``)
attribute accounting sessions to the customer; each identity belongs to at most one customer
(the store enforces that across customers).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from ispmon.availability.endpoints import SLUG_RE, slugify
from ispmon.validation import unstorable_text

Period = Literal["monthly", "weekly", "daily"]
Policy = Literal["notify", "webhook", "coa", "disconnect"]
MAX_IDENTITIES = 1000
RESERVED_IDS = frozenset({"bulk"})
TEXT_PROBLEM = "must not contain NUL characters or unpaired surrogates"


class Enforcement(BaseModel):
    """What happens at 100 % of the quota. `attributes` are sent in the CoA-Request (e.g.
    ``{"Filter-Id": "throttled"}``); `url` receives the webhook's JSON POST."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "notify"
    attributes: dict[str, str | int] = Field(default_factory=dict)
    url: HttpUrl | None = None
    # At the period's reset, a CoA with these attributes lifts a `coa` restriction.
    lift_attributes: dict[str, str | int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parameters(self) -> Enforcement:
        if self.policy == "webhook" and self.url is None:
            raise ValueError("url: is required for the webhook policy")
        if self.policy != "webhook" and self.url is not None:
            raise ValueError(f"url: only applies to the webhook policy, not {self.policy!r}")
        if self.policy == "coa" and not self.attributes:
            raise ValueError("attributes: the coa policy needs the attributes to send (e.g. Filter-Id)")
        if self.policy not in ("coa", "disconnect") and (self.attributes or self.lift_attributes):
            raise ValueError(
                f"attributes: only apply to the coa and disconnect policies, not {self.policy!r}"
            )
        return self


class CustomerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    plan: str | None = Field(None, max_length=200)
    quota_bytes: int | None = Field(None, ge=1, le=2**63 - 1)  # None: unlimited
    period: Period = "monthly"
    reset_day: int = Field(1, ge=1, le=28)  # monthly: the day of the month the period starts
    timezone: str = "UTC"
    counts: Literal["total", "download"] = "total"
    # What the quota (enforcement, quota alerts, the summary's percent) counts: RADIUS accounting,
    # or, opted in, the flow collector's figures for the customer's prefixes.
    quota_source: Literal["radius", "flow"] = "radius"
    thresholds: list[int] = Field(default_factory=lambda: [80, 100], min_length=0, max_length=10)
    enforcement: Enforcement = Field(default_factory=Enforcement)
    usernames: list[str] = Field(default_factory=list, max_length=MAX_IDENTITIES)
    prefixes: list[str] = Field(default_factory=list, max_length=MAX_IDENTITIES)

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("id") is None and isinstance(data.get("name"), str):
            return {**data, "id": slugify(data["name"], "customer")}
        return data

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.fullmatch(value):
            raise ValueError(
                "must be a slug: 1-64 of a-z, 0-9, '-', '_' (starting and ending with a letter or digit)"
            )
        if value in RESERVED_IDS:
            # /customers/bulk is a route of its own; here, so a derived id ("Bulk") is refused too.
            raise ValueError(f"{value!r} is reserved")
        return value

    @field_validator("name", "plan")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and unstorable_text(value) is not None:
            raise ValueError(TEXT_PROBLEM)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value[:64]!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _lists(self) -> CustomerSpec:
        # Checked here, not per field, so an error names the item: "usernames[1]: ...".
        for index, percent in enumerate(self.thresholds):
            if not 1 <= percent <= 1000:
                raise ValueError(f"thresholds[{index}]: a percentage from 1 to 1000, got {percent}")
            if percent in self.thresholds[:index]:
                raise ValueError(f"thresholds[{index}]: {percent} is listed twice")
        self.thresholds = sorted(self.thresholds)
        for index, name in enumerate(self.usernames):
            # RFC 2865 5.1: User-Name is 1-253 octets.
            if not name or len(name.encode("utf-8", "surrogatepass")) > 253:
                raise ValueError(f"usernames[{index}]: a RADIUS User-Name is 1 to 253 octets")
            if unstorable_text(name) is not None:
                raise ValueError(f"usernames[{index}]: {TEXT_PROBLEM}")
            if name in self.usernames[:index]:
                raise ValueError(f"usernames[{index}]: {name!r} is listed twice")
        prefixes: list[str] = []
        for index, text in enumerate(self.prefixes):
            try:
                network = str(ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                raise ValueError(f"prefixes[{index}]: {str(exc)[:120]}") from None
            if network in prefixes:
                raise ValueError(f"prefixes[{index}]: {text!r} is listed twice")
            prefixes.append(network)
        self.prefixes = prefixes
        return self

    @model_validator(mode="after")
    def _period_fields(self) -> CustomerSpec:
        if self.period != "monthly" and "reset_day" in self.model_fields_set and self.reset_day != 1:
            raise ValueError(f"reset_day: only applies to the monthly period, not {self.period!r}")
        return self


def build_customer(data: Any) -> CustomerSpec:
    """Validate one definition (raises pydantic's ValidationError; `error_list` names the fields)."""
    return CustomerSpec.model_validate(data)
