"""Settings (environment variables + TOML config file), checked at load time.

Precedence: environment variables > the config file's ``[settings]`` table > defaults. The file may
also declare ``[[endpoints]]`` (same fields as the API body), ``[[maintenance]]`` windows, alert ``[channels]``
(name = apprise URL or list of URLs), ``[[alert_rules]]`` and ``[[escalation_policies]]`` as code.
Every error names the key it is about (``SERVICE_CHECK_INTERVAL``, ``endpoints[2].timeout``, ...).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ispmon.alerts.config import load_alert_config
from ispmon.availability.endpoints import EndpointDefaults, EndpointSpec, build_endpoint
from ispmon.availability.maintenance import validate_config_windows
from ispmon.errors import ConfigError
from ispmon.validation import error_list


def default_state_dir() -> Path:
    # systemd's StateDirectory= sets STATE_DIRECTORY; otherwise the XDG state dir of the user.
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ispmon"


class Settings(BaseSettings):
    """Every setting; the env var is the field name in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="forbid", validate_default=True)

    # The seed design's names and defaults.
    service_check_interval: float = Field(60.0, ge=1, le=86400)
    service_check_timeout: float = Field(5.0, gt=0, le=300)
    service_check_retries: int = Field(3, ge=0, le=10)
    outage_detection_threshold: int = Field(3, ge=1, le=100)
    outage_verification_enabled: bool = True
    alert_notification_channels: str = "email"
    elasticsearch_sync_interval: int = Field(300, ge=1)
    cleanup_retention_days: int = Field(30, ge=1, le=3650)
    database_url: str | None = None
    elasticsearch_url: str | None = None
    # The API and the process.
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=0, le=65535)
    ispmon_state_dir: Path = Field(default_factory=default_state_dir)
    ispmon_api_token: str | None = Field(None, repr=False)
    ispmon_config: Path | None = None
    # ispmon's own additions (same naming families).
    outage_recovery_threshold: int = Field(2, ge=1, le=100)
    outage_verification_checks: int = Field(2, ge=1, le=10)
    outage_flap_threshold: int = Field(6, ge=2, le=50)
    ispmon_db_connect_timeout: float = Field(30.0, ge=0, le=3600)
    ispmon_max_concurrency: int = Field(500, ge=1, le=100000)
    ispmon_write_queue_size: int = Field(100000, ge=100)
    ispmon_log_level: str = "info"
    ispmon_log_format: str = Field("auto", pattern="^(auto|json|console)$")
    # Alert delivery (the outbox sender).
    alert_max_attempts: int = Field(10, ge=1, le=100)
    alert_retry_base_seconds: float = Field(10.0, ge=0.01, le=3600)
    alert_retry_max_seconds: float = Field(900.0, ge=0.01, le=86400)
    alert_channel_rate_limit: int = Field(30, ge=1, le=10000)
    alert_send_timeout: float = Field(30.0, gt=0, le=300)
    alert_base_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")

    @field_validator("ispmon_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @field_validator("ispmon_api_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("must be at least 16 characters (use a random token)")
        return value or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: env overrides the file's [settings], which arrive as init kwargs.
        return (env_settings, init_settings)

    @property
    def endpoint_defaults(self) -> EndpointDefaults:
        return EndpointDefaults(
            check_interval=self.service_check_interval,
            timeout=self.service_check_timeout,
            retries=self.service_check_retries,
        )

    @property
    def link_base(self) -> str:
        """Where messages link to (outages, alerts): ALERT_BASE_URL, else this API's own address."""
        if self.alert_base_url:
            return self.alert_base_url.rstrip("/")
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"http://{host}:{self.api_port}"

    @property
    def notification_channels(self) -> list[str]:
        return [c.strip() for c in self.alert_notification_channels.split(",") if c.strip()]


class FileConfig(BaseModel):
    """The shape of the TOML file (settings are validated by `Settings`, the rest here)."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[dict[str, Any]] = Field(default_factory=list)
    maintenance: list[dict[str, Any]] = Field(default_factory=list)
    channels: dict[str, Any] = Field(default_factory=dict)
    alert_rules: list[dict[str, Any]] = Field(default_factory=list)
    escalation_policies: list[dict[str, Any]] = Field(default_factory=list)


class LoadedConfig(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    maintenance: list[Any] = Field(
        default_factory=list
    )  # MaintenanceWindowSpec (ispmon.availability.maintenance)
    alerting: Any = None  # ispmon.alerts.config.AlertConfig (channels, rules, escalation policies)
    path: Path | None = None


def _env_name(field: str) -> str:
    return field.split(".")[0].split("[")[0].upper()


def load_settings(file_settings: dict[str, Any] | None = None, where: str = "") -> Settings:
    file_settings = file_settings or {}
    for key in file_settings:
        if key.lower() not in Settings.model_fields:
            raise ConfigError(f"{where}settings.{key}: unknown setting")
    try:
        return Settings(**{k.lower(): v for k, v in file_settings.items()})
    except ValidationError as exc:
        messages = []
        for err in error_list(exc):
            field = err["field"]
            key = field.split(".")[0]
            # Name the env var when the value came from the environment, else the file key.
            if any(k.lower() == key for k in file_settings) and _env_name(field) not in os.environ:
                label = f"{where}settings.{key}"
            else:
                label = _env_name(field)
            messages.append(f"{label}: {err['message']}")
        raise ConfigError("; ".join(messages)) from None


def load_config(path: Path | str | None = None) -> LoadedConfig:
    """Load settings from the environment and, when given (or ISPMON_CONFIG is set), a TOML file."""
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
    try:
        shape = FileConfig.model_validate(raw)
    except ValidationError as exc:
        err = error_list(exc)[0]
        hint = (
            " (expected [settings], [[endpoints]], [[maintenance]], [channels], [[alert_rules]]"
            " or [[escalation_policies]])"
            if err["message"] == "unknown field"
            else ""
        )
        raise ConfigError(f"{where}{err['field']}: {err['message']}{hint}") from None
    settings = load_settings(shape.settings, where)
    settings = settings.model_copy(update={"ispmon_config": path})
    endpoints: list[EndpointSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(shape.endpoints):
        try:
            endpoint = build_endpoint(item, settings.endpoint_defaults)
        except ValidationError as exc:
            err = error_list(exc, prefix=f"endpoints[{index}]")[0]
            raise ConfigError(f"{where}{err['field']}: {err['message']}") from None
        if endpoint.id in seen:
            raise ConfigError(
                f"{where}endpoints[{index}].id: duplicate id {endpoint.id!r} (also endpoints[{seen[endpoint.id]}])"
            )
        seen[endpoint.id] = index
        endpoints.append(endpoint)
    windows = validate_config_windows(shape.maintenance, where, set(seen))
    check_parents(endpoints, where)
    alerting = load_alert_config(shape.channels, shape.alert_rules, shape.escalation_policies, where)
    return LoadedConfig(
        settings=settings, endpoints=endpoints, maintenance=windows, alerting=alerting, path=path
    )


def check_parents(endpoints: list[EndpointSpec], where: str = "") -> None:
    """`parent` must name an endpoint of the file, and parents must not form a cycle."""
    by_id = {e.id: e for e in endpoints}
    for index, endpoint in enumerate(endpoints):
        if endpoint.parent is None:
            continue
        if endpoint.parent not in by_id:
            raise ConfigError(
                f"{where}endpoints[{index}].parent: no endpoint {endpoint.parent!r} in this file"
            )
        seen = {endpoint.id}
        node = by_id.get(endpoint.parent)
        while node is not None:
            if node.id in seen:
                raise ConfigError(
                    f"{where}endpoints[{index}].parent: parents form a cycle through {node.id!r}"
                )
            seen.add(node.id)
            node = by_id.get(node.parent) if node.parent else None
