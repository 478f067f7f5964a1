"""Settings (environment variables + TOML config file), checked at load time.

Precedence: environment variables > the config file's ``[settings]`` table > defaults. The file may
also declare ``[[endpoints]]`` (same fields as the API body), ``[[maintenance]]`` windows, alert ``[channels]``
(name = apprise URL or list of URLs), ``[[alert_rules]]`` and ``[[escalation_policies]]`` as code,
and SNMP ``[[devices]]``.
Every error names the key it is about (``SERVICE_CHECK_INTERVAL``, ``endpoints[2].timeout``, ...),
and loading reports every error it finds in one `ConfigError`, not only the first.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ispmon.alerts.config import load_alert_config
from ispmon.availability.endpoints import EndpointDefaults, EndpointSpec, build_endpoint, slugify
from ispmon.availability.maintenance import validate_config_windows
from ispmon.errors import ConfigError
from ispmon.flows.exporters import ExporterSpec
from ispmon.network.devices import DeviceSpec, load_config_devices
from ispmon.reports.schedules import ReportSchedule, schedule_channel_errors
from ispmon.settings import Settings, check_database_url, default_state_dir
from ispmon.usage.customers import CustomerSpec
from ispmon.usage.nas import NasSpec
from ispmon.validation import error_list

__all__ = ["LoadedConfig", "Settings", "check_database_url", "default_state_dir", "load_config", "load_settings"]


class FileConfig(BaseModel):
    """The shape of the TOML file (settings are validated by `Settings`, the rest here)."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[dict[str, Any]] = Field(default_factory=list)
    maintenance: list[dict[str, Any]] = Field(default_factory=list)
    channels: dict[str, Any] = Field(default_factory=dict)
    alert_rules: list[dict[str, Any]] = Field(default_factory=list)
    escalation_policies: list[dict[str, Any]] = Field(default_factory=list)
    devices: list[dict[str, Any]] = Field(default_factory=list)
    customers: list[dict[str, Any]] = Field(default_factory=list)
    radius_clients: list[dict[str, Any]] = Field(default_factory=list)
    flow_exporters: list[dict[str, Any]] = Field(default_factory=list)
    report_schedules: list[dict[str, Any]] = Field(default_factory=list)


class LoadedConfig(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    maintenance: list[Any] = Field(
        default_factory=list
    )  # MaintenanceWindowSpec (ispmon.availability.maintenance)
    alerting: Any = None  # ispmon.alerts.config.AlertConfig (channels, rules, escalation policies)
    devices: list[DeviceSpec] = Field(default_factory=list)
    customers: list[CustomerSpec] = Field(default_factory=list)
    radius_clients: list[NasSpec] = Field(default_factory=list)
    flow_exporters: list[ExporterSpec] = Field(default_factory=list)
    report_schedules: list[ReportSchedule] = Field(default_factory=list)
    path: Path | None = None


def _env_name(field: str) -> str:
    return field.split(".")[0].split("[")[0].upper()


def load_settings(file_settings: dict[str, Any] | None = None, where: str = "") -> Settings:
    """Settings from the environment and the file's [settings]; one ConfigError lists every problem."""
    file_settings = file_settings or {}
    messages = [
        f"{where}settings.{key}: unknown setting"
        for key in file_settings
        if key.lower() not in Settings.model_fields
    ]
    known = {k.lower(): v for k, v in file_settings.items() if k.lower() in Settings.model_fields}
    try:
        settings = Settings(**known)
    except ValidationError as exc:
        for err in error_list(exc):
            field = err["field"]
            key = field.split(".")[0]
            # Name the env var when the value came from the environment, else the file key.
            if key in known and _env_name(field) not in os.environ:
                label = f"{where}settings.{key}"
            else:
                label = _env_name(field)
            messages.append(f"{label}: {err['message']}")
        raise ConfigError(messages) from None
    if messages:
        raise ConfigError(messages)
    return settings


def _fallback_defaults(file_settings: dict[str, Any]) -> EndpointDefaults:
    """Endpoint defaults to check the endpoints with when the settings as a whole are invalid:
    each of the three from the settings when it is valid alone, else the built-in one, so the
    endpoints' own errors are still reported and a bad setting is not repeated on each endpoint."""
    values: dict[str, Any] = {}
    for field, key in (
        ("check_interval", "service_check_interval"),
        ("timeout", "service_check_timeout"),
        ("retries", "service_check_retries"),
    ):
        try:
            given = {key: file_settings[key]} if key in file_settings else {}
            values[field] = getattr(Settings(**given), key)
        except ValidationError:
            continue  # this one is invalid (its error is reported), or another setting is
    return EndpointDefaults(**values)


def _declared_ids(items: list[dict[str, Any]]) -> set[str]:
    """The ids the file's endpoints declare, valid or not: a parent naming an endpoint that has its
    own error is not a second error."""
    ids = set()
    for item in items:
        if isinstance(item, dict):
            if isinstance(item.get("id"), str):
                ids.add(item["id"].strip())
            elif isinstance(item.get("name"), str):
                ids.add(slugify(item["name"].strip()))
    return ids


def load_config(path: Path | str | None = None) -> LoadedConfig:
    """Load settings from the environment and, when given (or ISPMON_CONFIG is set), a TOML file.

    Raises one ConfigError whose `errors` lists every problem in the file and the environment.
    """
    if path is None and os.environ.get("ISPMON_CONFIG"):
        path = os.environ["ISPMON_CONFIG"]
    if path is None:
        return LoadedConfig(settings=load_settings())
    path = Path(path)
    where = f"{path}: "
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    errors: list[str] = []
    try:
        shape = FileConfig.model_validate(raw)
    except ValidationError as exc:
        bad_tables = set()
        for err in error_list(exc):
            hint = (
                " (expected [settings], [[endpoints]], [[maintenance]], [channels], [[alert_rules]],"
                " [[escalation_policies]], [[devices]], [[customers]], [[radius_clients]], [[flow_exporters]]"
                " or [[report_schedules]])"
                if err["message"] == "unknown field"
                else ""
            )
            errors.append(f"{where}{err['field']}: {err['message']}{hint}")
            bad_tables.add(err["field"].split(".")[0].split("[")[0])
        # The tables that are well formed are still checked, so one run shows every problem.
        shape = FileConfig.model_validate({k: v for k, v in raw.items() if k not in bad_tables})
    settings: Settings | None = None
    try:
        settings = load_settings(shape.settings, where).model_copy(update={"ispmon_config": path})
        defaults = settings.endpoint_defaults
    except ConfigError as exc:
        errors.extend(exc.errors)
        defaults = _fallback_defaults({k.lower(): v for k, v in shape.settings.items()})
    endpoints: list[tuple[int, EndpointSpec]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(shape.endpoints):
        try:
            endpoint = build_endpoint(item, defaults)
        except ValidationError as exc:
            fields: set[str] = set()
            for err in error_list(exc, prefix=f"endpoints[{index}]"):
                if err["field"] not in fields:  # a union field fails once per member: say it once
                    fields.add(err["field"])
                    errors.append(f"{where}{err['field']}: {err['message']}")
            continue
        if endpoint.id in seen:
            errors.append(
                f"{where}endpoints[{index}].id: duplicate id {endpoint.id!r} (also endpoints[{seen[endpoint.id]}])"
            )
            continue
        seen[endpoint.id] = index
        endpoints.append((index, endpoint))
    errors.extend(parent_errors(endpoints, where, _declared_ids(shape.endpoints)))
    windows: list[Any] = []
    try:
        windows = validate_config_windows(shape.maintenance, where, set(seen))
    except ConfigError as exc:
        errors.extend(exc.errors)
    default_channels = settings.notification_channels if settings else _default_channels(shape.settings)
    alerting = None
    try:
        alerting = load_alert_config(
            shape.channels, shape.alert_rules, shape.escalation_policies, where, default_channels
        )
    except ConfigError as exc:
        errors.extend(exc.errors)
    devices: list[DeviceSpec] = []
    try:
        devices = load_config_devices(shape.devices, where, _declared_ids(shape.endpoints))
    except ConfigError as exc:
        errors.extend(exc.errors)
    customers = _load_table(shape.customers, "customers", CustomerSpec, where, errors)
    radius_clients = _load_table(shape.radius_clients, "radius_clients", NasSpec, where, errors)
    flow_exporters = _load_table(shape.flow_exporters, "flow_exporters", ExporterSpec, where, errors)
    errors.extend(_identity_errors(customers, where))
    errors.extend(_exporter_errors(flow_exporters, where))
    report_schedules = _load_table(shape.report_schedules, "report_schedules", ReportSchedule, where, errors)
    errors.extend(schedule_channel_errors(report_schedules, set(shape.channels), where))
    if errors or settings is None:
        raise ConfigError(errors)
    return LoadedConfig(
        settings=settings,
        endpoints=[e for _, e in endpoints],
        maintenance=windows,
        alerting=alerting,
        devices=devices,
        customers=[c for _, c in customers],
        radius_clients=[n for _, n in radius_clients],
        flow_exporters=[e for _, e in flow_exporters],
        report_schedules=[r for _, r in report_schedules],
        path=path,
    )


def _load_table(
    items: list[dict[str, Any]], table: str, model: type[Any], where: str, errors: list[str]
) -> list[tuple[int, Any]]:
    """Each item of ``[[table]]`` validated by `model`; errors name ``table[i].field``; ids unique."""
    out: list[tuple[int, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            spec = model.model_validate(item)
        except ValidationError as exc:
            errors.extend(
                f"{where}{e['field']}: {e['message']}" for e in error_list(exc, prefix=f"{table}[{index}]")
            )
            continue
        if spec.id in seen:
            errors.append(f"{where}{table}[{index}].id: duplicate id {spec.id!r} (also {table}[{seen[spec.id]}])")
            continue
        seen[spec.id] = index
        out.append((index, spec))
    return out


def _exporter_errors(exporters: list[tuple[int, ExporterSpec]], where: str) -> list[str]:
    """Two [[flow_exporters]] with one id or one address."""
    errors: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for index, spec in exporters:
        for field in ("id", "address"):
            value = getattr(spec, field)
            other = seen.setdefault((field, value), index)
            if other != index:
                errors.append(f"{where}flow_exporters[{index}].{field}: {value!r} is also in flow_exporters[{other}]")
    return errors


def _identity_errors(customers: list[tuple[int, CustomerSpec]], where: str) -> list[str]:
    """A User-Name or prefix belongs to one customer of the file."""
    errors = []
    owners: dict[tuple[str, str], int] = {}
    for index, spec in customers:
        for kind, values in (("usernames", spec.usernames), ("prefixes", spec.prefixes)):
            for position, value in enumerate(values):
                other = owners.setdefault((kind, value), index)
                if other != index:
                    field = f"customers[{index}].{kind}[{position}]"
                    errors.append(f"{where}{field}: {value!r} is also in customers[{other}]")
    return errors


def _default_channels(file_settings: dict[str, Any]) -> list[str]:
    """ALERT_NOTIFICATION_CHANNELS as given, when the settings as a whole did not load."""
    value = os.environ.get("ALERT_NOTIFICATION_CHANNELS")
    if value is None:
        value = next(
            (v for k, v in file_settings.items() if k.lower() == "alert_notification_channels"), None
        )
    if not isinstance(value, str):
        value = Settings.model_fields["alert_notification_channels"].default
    return [c.strip() for c in value.split(",") if c.strip()]


def parent_errors(
    endpoints: list[tuple[int, EndpointSpec]], where: str = "", declared: set[str] | None = None
) -> list[str]:
    """`parent` must name an endpoint of the file, and parents must not form a cycle.

    `endpoints` are the valid ones with their index in the file; `declared` adds the ids of those
    that failed validation (a child naming one is not a second error: the parent has its own)."""
    by_id = {e.id: e for _, e in endpoints}
    known = set(by_id) | (declared or set())
    errors = []
    for index, endpoint in endpoints:
        if endpoint.parent is None:
            continue
        if endpoint.parent not in known:
            errors.append(f"{where}endpoints[{index}].parent: no endpoint {endpoint.parent!r} in this file")
            continue
        seen = {endpoint.id}
        node = by_id.get(endpoint.parent)
        while node is not None:
            if node.id in seen:
                errors.append(f"{where}endpoints[{index}].parent: parents form a cycle through {node.id!r}")
                break
            seen.add(node.id)
            node = by_id.get(node.parent) if node.parent else None
    return errors
