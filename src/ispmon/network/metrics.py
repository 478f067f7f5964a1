"""The seed's metric records, validated: a network interface sample and a host's system sample.

`MetricsService.record_network_metric({...})` / `record_system_metric({...})` and
``POST /metrics/network`` / ``POST /metrics/system`` take exactly these keys; any other key is
refused by name. Units: every percentage is 0-100 (bandwidth_usage is the share of the
interface's capacity in use), latency is milliseconds (>= 0), load_average is the 1-minute load
average (>= 0). `host` (or its synonym `device`) names the machine measured; `recorded_at` (ISO
8601, no offset: UTC) is when, now by default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Percent = Annotated[
    float | None, Field(default=None, ge=0, le=100, strict=True, allow_inf_nan=False, description="Percent, 0-100")
]
NonNegative = Annotated[float | None, Field(default=None, ge=0, strict=True, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    host: Name | None = Field(default=None, description="The host or device measured (synonym: device)")
    recorded_at: datetime | None = Field(default=None, description="When it was measured (default: now)")

    @model_validator(mode="before")
    @classmethod
    def _device_is_host(cls, data: Any) -> Any:
        if isinstance(data, dict) and "device" in data:
            if "host" in data:
                raise ValueError("device: give host or device, not both")
            data = {("host" if k == "device" else k): v for k, v in data.items()}
        return data

    @field_validator("recorded_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def _values(self) -> list[str]:
        return [k for k in type(self).model_fields if k not in {"host", "recorded_at", "interface"}]

    @model_validator(mode="after")
    def _something_measured(self) -> _Metric:
        if all(getattr(self, k) is None for k in self._values()):
            names = ", ".join(self._values())
            raise ValueError(f"{self._values()[0]}: give at least one of {names}")
        return self


class NetworkMetric(_Metric):
    """One interface sample (the seed: interface, bandwidth_usage, packet_loss, latency)."""

    interface: Name = Field(description="Interface name, e.g. eth0")
    bandwidth_usage: Percent
    packet_loss: Percent
    latency: NonNegative = Field(default=None, description="Milliseconds, >= 0")

    def row(self, now: datetime) -> tuple[Any, ...]:
        at = self.recorded_at or now
        return (at, self.host, self.interface, self.bandwidth_usage, self.packet_loss, self.latency)


class SystemMetric(_Metric):
    """One host sample (the seed: cpu_usage, memory_usage, disk_usage, load_average)."""

    cpu_usage: Percent
    memory_usage: Percent
    disk_usage: Percent
    load_average: NonNegative = Field(default=None, description="1-minute load average, >= 0")

    def row(self, now: datetime) -> tuple[Any, ...]:
        at = self.recorded_at or now
        return (at, self.host, self.cpu_usage, self.memory_usage, self.disk_usage, self.load_average)
