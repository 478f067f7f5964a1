"""A dashboard view: a chart an operator composed (series, filters, step, kind), validated once.

Pure: the model and its rules. Stored by `web.views` in the ``dashboard_views`` table (schema
version 15); the page draws it from the routes each series names (`SOURCES`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ispmon.availability.slugs import SLUG_RE, SLUG_SCHEMA, slugify

# What a series can be, and the route the page reads it from ({id} is the series' `target`).
SOURCES: dict[str, str] = {
    "endpoint_response_time": "/services/{id}/history",
    "interface_rates": "/interfaces/{id}/metrics",
    "customer_usage": "/customers/{id}/usage",
    "checks_by_status": "/dashboard/checks",
}
SourceName = Literal["endpoint_response_time", "interface_rates", "customer_usage", "checks_by_status"]
ChartKind = Literal["line", "area", "bar", "table"]
Step = Literal["raw", "5m", "1h", "1d"]
# The filters a view may carry; which series each narrows is said in README (Dashboard views).
FILTER_KEYS = ("tag", "protocol", "status", "direction")
MAX_RANGE_HOURS = 90 * 24


class SeriesSpec(BaseModel):
    """One series of a view: where it comes from and which thing it is about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceName
    target: str | None = Field(
        default=None,
        max_length=64,
        description="The endpoint id, interface id or customer id; none for checks_by_status",
    )
    label: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _target_fits_source(self) -> SeriesSpec:
        if self.source == "checks_by_status":
            if self.target is not None:
                raise ValueError("target: checks_by_status counts every endpoint (use filters); leave it out")
        elif self.target is None:
            raise ValueError(f"target: required for {self.source}")
        elif self.source == "interface_rates":
            if not self.target.isdigit() or not 0 < int(self.target) < 2**63:
                raise ValueError("target: an interface id is a positive integer")
        elif not SLUG_RE.fullmatch(self.target):
            raise ValueError("target: must be a slug id (1-64 of a-z, 0-9, '-', '_')")
        return self


class ViewSpec(BaseModel):
    """A saved view. `id` is derived from `name` when absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Slug id; derived from name when omitted", json_schema_extra=SLUG_SCHEMA)
    name: str = Field(min_length=1, max_length=200)
    kind: ChartKind = "line"
    step: Step = "raw"
    range_hours: int = Field(default=24, ge=1, le=MAX_RANGE_HOURS, description="How far back the chart reaches")
    series: list[SeriesSpec] = Field(min_length=1, max_length=10)
    filters: dict[str, str] = Field(default_factory=dict, description=f"Keys: {', '.join(FILTER_KEYS)}")
    pinned: bool = Field(default=False, description="Shown on the dashboard's front page")

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("id") is None and isinstance(data.get("name"), str):
            data = {**data, "id": slugify(data["name"], fallback="view")}
        return data

    @model_validator(mode="after")
    def _check(self) -> ViewSpec:
        if not SLUG_RE.fullmatch(self.id):
            raise ValueError("id: must be a slug (1-64 of a-z, 0-9, '-', '_')")
        for key, value in self.filters.items():
            if key not in FILTER_KEYS:
                raise ValueError(f"filters.{key[:40]}: unknown filter (accepted: {', '.join(FILTER_KEYS)})")
            if not value or len(value) > 64:
                raise ValueError(f"filters.{key}: must be 1-64 characters")
        return self
