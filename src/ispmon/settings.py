"""The daemon's settings: environment variables, then the config file's ``[settings]`` table, then
defaults, each validated with its bounds (`Settings`). Loading the file as a whole, with its
endpoint, device, customer, NAS, exporter and alerting tables, is `ispmon.config`'s business;
`Settings` is re-exported there, where most code imports it from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ispmon.availability.endpoints import EndpointDefaults, is_hostname
from ispmon.search.templates import parse_retention
from ispmon.validation import is_loopback

# Agent ids and locations: what a host name or a POP code looks like (they name rows and log lines).
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"


def default_agent_id() -> str:
    """The host name, made to fit AGENT_ID_PATTERN (a host name nearly always does already)."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:63].lstrip("-_.:")
    return name or "agent"


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
    # Endpoint rollups (hours and days of status history, the reports' source); raw history keeps
    # CLEANUP_RETENTION_DAYS.
    rollup_retention_days: int = Field(400, ge=1, le=36500)
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
    # Seconds between the collector's flushes of closed 1-minute buckets to flow_aggregates.
    flow_flush_interval: float = Field(10.0, ge=0.5, le=60, allow_inf_nan=False)
    # Raw flow records kept this many hours (0: not kept), queued up to flow_raw_max_queued.
    flow_raw_hours: int = Field(0, ge=0, le=168)
    flow_raw_max_queued: int = Field(100_000, ge=1000, le=10_000_000)
    # The Elasticsearch feed (search/): credentials, TLS, index prefix, batch size (search/settings.py checks them).
    elasticsearch_api_key: str | None = Field(None, repr=False)
    elasticsearch_username: str | None = None
    elasticsearch_password: str | None = Field(None, repr=False)
    elasticsearch_ca_file: Path | None = None
    elasticsearch_index_prefix: str = Field("isp", pattern=r"^[a-z0-9][a-z0-9_.]{0,49}$")
    elasticsearch_batch_size: int = Field(1000, ge=1, le=100_000)
    elasticsearch_timeout: float = Field(30.0, gt=0, le=600)
    elasticsearch_retention_days: int = Field(0, ge=0, le=36500)  # 0: each family's default
    # Per dated family, "status=30,outage=730,logs=14" (search/templates.py: parse_retention);
    # a family named here wins over ELASTICSEARCH_RETENTION_DAYS.
    elasticsearch_retention: str | None = Field(None, max_length=1000)
    elasticsearch_observer_location: str | None = Field(None, max_length=200)
    elasticsearch_log_queue: int = Field(10_000, ge=100, le=1_000_000)
    # Several agents on one PostgreSQL (agents/): this agent's id and point of presence; an agent
    # whose heartbeat is older than AGENT_DEAD_AFTER seconds loses its endpoints and singletons.
    ispmon_agent_id: str = Field(default_factory=default_agent_id, pattern=AGENT_ID_PATTERN)
    ispmon_location: str = Field("default", pattern=AGENT_ID_PATTERN)
    agent_dead_after: float = Field(30.0, ge=5, le=3600, allow_inf_nan=False)
    # The backstop re-read of the shared configuration when a notification was missed.
    agent_config_poll_interval: float = Field(30.0, ge=1, le=3600, allow_inf_nan=False)

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
            raise ValueError(
                f"{value[:64]!r} is not an IP address (0.0.0.0 listens on every IPv4 address)"
            ) from None

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

    @field_validator("elasticsearch_url")
    @classmethod
    def _elasticsearch_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value.strip())
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or any(c.isspace() for c in value.strip())
        ):
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. https://es.example.net:9200"
            )
        return value.strip()

    @field_validator("elasticsearch_retention")
    @classmethod
    def _elasticsearch_retention(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_retention(value)  # its ValueError names the family or the number
        return value.strip() or None

    @property
    def elasticsearch_retention_by_family(self) -> dict[str, int]:
        return parse_retention(self.elasticsearch_retention or "")

    @field_validator("elasticsearch_ca_file")
    @classmethod
    def _elasticsearch_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{str(value)[:200]!r} is not a readable file (the PEM of the cluster's CA)")
        return value

    @model_validator(mode="after")
    def _elasticsearch_auth(self) -> Settings:
        if bool(self.elasticsearch_username) != bool(self.elasticsearch_password):
            raise ValueError(
                "elasticsearch_username: basic auth needs both ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD"
            )
        if self.elasticsearch_api_key and self.elasticsearch_username:
            raise ValueError("elasticsearch_api_key: use an API key or a user name and password, not both")
        return self

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
