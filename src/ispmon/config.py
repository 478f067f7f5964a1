"""Settings (environment variables + TOML config file), checked at load time.

Precedence: environment variables > the config file's ``[settings]`` table > defaults. The file may
also declare ``[[endpoints]]`` (same fields as the API body), ``[[maintenance]]`` windows, alert ``[channels]``
(name = apprise URL or list of URLs), ``[[alert_rules]]`` and ``[[escalation_policies]]`` as code,
and SNMP ``[[devices]]``.
Every error names the key it is about (``SERVICE_CHECK_INTERVAL``, ``endpoints[2].timeout``, ...),
and loading reports every error it finds in one `ConfigError`, not only the first.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ispmon.alerts.config import load_alert_config
from ispmon.availability.endpoints import EndpointDefaults, EndpointSpec, build_endpoint, is_hostname, slugify
from ispmon.availability.maintenance import validate_config_windows
from ispmon.errors import ConfigError
from ispmon.flows.exporters import ExporterSpec
from ispmon.network.devices import DeviceSpec, load_config_devices
from ispmon.usage.customers import CustomerSpec
from ispmon.usage.nas import NasSpec
from ispmon.validation import error_list, is_loopback

_DATABASE_URL_EXAMPLE = "postgresql://ispmon:PASSWORD@db.example.net:5432/ispmon"
_ENCODE_HINT = "percent-encode '@', ':', '/', '?' and '#' in the user name and password"


def check_database_url(value: str) -> str:
    """Reject a DATABASE_URL that asyncpg could not use, at load time instead of after the
    connection retries. The messages never quote the URL or any part of it: a password with an
    unencoded '/' or '@' ends up in what a parser takes for the host or the port."""
    if any(c.isspace() for c in value):
        raise ValueError(f"must not contain white space ({_ENCODE_HINT}; a space is %20)")
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        raise ValueError(f"must be a postgresql:// URL, e.g. {_DATABASE_URL_EXAMPLE}")
    # asyncpg splits user info from the hosts at the first '@' and accepts "h1:p1,h2:p2".
    netloc = urlsplit(value).netloc
    hosts = netloc.partition("@")[2] if "@" in netloc else netloc
    for spec in filter(None, hosts.split(",")):
        if spec.startswith("["):
            host, _, port = spec[1:].partition("]")
            port = port[1:] if port.startswith(":") else port
        else:
            host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "")
        host = unquote(host)
        if "@" in host or (host and not host.startswith("/") and not is_hostname(host)):
            raise ValueError(f"the host is not a valid host name or address ({_ENCODE_HINT})")
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"the port must be a number from 1 to 65535 ({_ENCODE_HINT})")
    return value


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
    ispmon_api_read_token: str | None = Field(None, repr=False)
    ispmon_config: Path | None = None
    # What one API client can hold (slow-loris and idle floods are shed, see api/listener.py).
    api_max_connections: int = Field(4096, ge=1, le=1_000_000)
    api_header_timeout: float = Field(10.0, gt=0, le=300)
    api_keepalive_timeout: float = Field(30.0, gt=0, le=3600)
    # Requests in a handler at once (at most: fewer while the event loop runs late), and how long one
    # more may wait (api/admission.py): the API shares the loop with probing, which comes first.
    api_max_concurrent_requests: int = Field(32, ge=1, le=10_000)
    api_queue_timeout: float = Field(5.0, gt=0, le=300)
    # Descriptors kept for probes and the database beyond one per in-flight check.
    ispmon_fd_reserve: int = Field(100, ge=0, le=100_000)
    # ispmon's own additions (same naming families).
    outage_recovery_threshold: int = Field(2, ge=1, le=100)
    outage_verification_checks: int = Field(2, ge=1, le=10)
    outage_flap_threshold: int = Field(6, ge=2, le=50)
    ispmon_db_connect_timeout: float = Field(30.0, ge=0, le=3600)
    ispmon_max_concurrency: int = Field(500, ge=1, le=100000)
    ispmon_write_queue_size: int = Field(100000, ge=100)
    ispmon_log_level: str = "info"
    ispmon_log_format: str = Field("auto", pattern="^(auto|json|console)$")
    # Seconds between samples of this host's CPU, memory, disk and load (0: none).
    ispmon_system_metrics_interval: float = Field(60.0, ge=0, le=86400)
    # Alert delivery (the outbox sender).
    alert_max_attempts: int = Field(10, ge=1, le=100)
    alert_retry_base_seconds: float = Field(10.0, ge=0.01, le=3600)
    alert_retry_max_seconds: float = Field(900.0, ge=0.01, le=86400)
    alert_channel_rate_limit: int = Field(30, ge=1, le=10000)
    alert_send_timeout: float = Field(30.0, gt=0, le=300)
    alert_send_lease_seconds: float = Field(60.0, ge=1, le=3600)
    alert_base_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    # Network performance (SNMP polling).
    interface_metrics_retention_days: int = Field(30, ge=1, le=3650)
    # Rollups: the 1h and 1d buckets are made from the 5m ones, so those stay at least 2 days.
    interface_rollup_5m_retention_days: int = Field(90, ge=2, le=3650)
    interface_rollup_1h_retention_days: int = Field(730, ge=1, le=3650)
    interface_rollup_1d_retention_days: int = Field(3650, ge=1, le=36500)
    snmp_max_concurrency: int = Field(100, ge=1, le=10000)
    # RADIUS accounting (the usage domain); port 0 disables the listener.
    radius_acct_address: str = "0.0.0.0"
    radius_acct_port: int = Field(1813, ge=0, le=65535)
    # Sessions whose NAS sends no Acct-Interim-Interval are lost after twice this many seconds.
    radius_interim_interval: int = Field(900, ge=10, le=86400)
    # The quota pass (crossings, enforcement): every this many seconds.
    quota_pass_interval: float = Field(30.0, ge=0.1, le=3600, allow_inf_nan=False)
    # NetFlow v5/v9/IPFIX collector (the flows domain); port 0 disables the listener.
    flow_address: str = "0.0.0.0"
    flow_port: int = Field(2055, ge=0, le=65535)
    # Keys per 1-minute bucket before the tail folds into "other" (bounded memory).
    flow_max_keys: int = Field(50_000, ge=100, le=10_000_000)
    flow_retention_days: int = Field(30, ge=1, le=3650)
    # SO_RCVBUF of the collector's socket (0: the kernel's default); Linux caps it at net.core.rmem_max.
    flow_rcvbuf: int = Field(8 << 20, ge=0, le=1 << 30)
    # Raw flow records kept this many hours (0: not kept), queued up to flow_raw_max_queued.
    flow_raw_hours: int = Field(0, ge=0, le=168)
    flow_raw_max_queued: int = Field(100_000, ge=1000, le=10_000_000)

    @field_validator("ispmon_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @field_validator("radius_acct_address", "flow_address")
    @classmethod
    def _radius_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(f"{value[:64]!r} is not an IP address (0.0.0.0 listens on every IPv4 address)") from None

    @field_validator("ispmon_system_metrics_interval")
    @classmethod
    def _system_metrics_interval(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (off) or at least 1 second")
        return value

    @field_validator("ispmon_api_token", "ispmon_api_read_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("must be at least 16 characters (use a random token)")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return check_database_url(value) if value else None

    @model_validator(mode="after")
    def _read_token(self) -> Settings:
        if self.ispmon_api_read_token is None:
            return self
        if not self.ispmon_api_token:
            raise ValueError(
                "ispmon_api_read_token: needs ISPMON_API_TOKEN (without it the API is loopback-only"
                " and open, so a read-only token would restrict nothing)"
            )
        if self.ispmon_api_read_token == self.ispmon_api_token:
            raise ValueError(
                "ispmon_api_read_token: must differ from ISPMON_API_TOKEN (it is the read-only one)"
            )
        return self

    @model_validator(mode="after")
    def _api_exposure(self) -> Settings:
        # Without a token anyone who can reach the port could change the configuration: listening
        # beyond loopback must be a decision (a token), never a silent fall-back to 127.0.0.1.
        if not self.ispmon_api_token and not is_loopback(self.api_host):
            raise ValueError(
                f"api_host: {self.api_host!r} is not a loopback address: set ISPMON_API_TOKEN to listen"
                " there (writes then need it), or use 127.0.0.1"
            )
        return self

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
    devices: list[dict[str, Any]] = Field(default_factory=list)
    customers: list[dict[str, Any]] = Field(default_factory=list)
    radius_clients: list[dict[str, Any]] = Field(default_factory=list)
    flow_exporters: list[dict[str, Any]] = Field(default_factory=list)


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
                " [[escalation_policies]], [[devices]], [[customers]], [[radius_clients]] or [[flow_exporters]])"
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
