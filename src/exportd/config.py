"""Settings, read from the environment (`EXPORTD_*`)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exportd.errors import ConfigurationError

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or text such as `90`, `30m`, `12h`, `7d`, `2w`."""
    if not isinstance(value, str):
        return value
    found = DURATION.match(value)
    if found is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 3600, 30m, 12h, 7d)")
    return float(found.group(1)) * DURATION_UNITS[(found.group(2) or "s").lower()]


def parse_size(value: Any) -> Any:
    """Bytes as a number, or text such as `500MB`, `1GiB`, `2G` (K/M/G/T: powers of 1024
    with `i` or no `B`, of 1000 with a plain `B`)."""
    if not isinstance(value, str):
        return value
    found = SIZE.match(value)
    if found is None:
        raise ValueError(f"not a size: {value!r} (use e.g. 1073741824, 500MB, 1GiB)")
    number, unit, binary = found.groups()
    power = "kmgt".index(unit.lower()) + 1 if unit else 0
    decimal = bool(unit) and not binary and value.strip().lower().endswith("b")
    return int(float(number) * (1000 if decimal else 1024) ** power)


def parse_schedule(value: Any) -> Any:
    """Delays as a list, or text such as `5s,5m,30m,2h` (brackets allowed)."""
    if not isinstance(value, str):
        return value
    items = [item for item in value.strip().strip("[]()").split(",") if item.strip()]
    return [parse_duration(item) for item in items]


def parse_owner_emails(value: Any) -> Any:
    """A map as JSON (`{"alice": "alice@example.com"}`) or `alice=a@x.org,bob=b@y.org`."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("{"):
        return orjson.loads(value)
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    return {owner.strip(): address.strip() for owner, _, address in pairs}


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Schedule = Annotated[list[Annotated[float, Field(ge=0)]], NoDecode, BeforeValidator(parse_schedule)]
OwnerEmails = Annotated[dict[str, str], NoDecode, BeforeValidator(parse_owner_emails)]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MIN_PART_SIZE = 5 * 2**20
"""S3 refuses smaller parts (all but the last of an upload)."""
MAX_PART_SIZE = 5 * 2**30


class Settings(BaseSettings):
    """Every setting has an `EXPORTD_` environment variable, e.g. `EXPORTD_HOME`."""

    model_config = SettingsConfigDict(env_prefix="EXPORTD_", extra="ignore")

    home: Path = Field(default=Path(".exportd"), description="embedded database, artifacts, key")
    database_url: str | None = Field(default=None, description="default: SQLite file in home")
    storage_url: str | None = Field(default=None, description="default: home/artifacts")
    scratch_dir: Path | None = Field(
        default=None, description="workers' scratch files (bundle members, xlsx rows); home/tmp"
    )
    secret_key: str | None = Field(default=None, description="default: generated once in home")

    host: str = "127.0.0.1"
    port: int = 8000

    concurrency: int = Field(default=2, ge=1, le=256)
    owner_running_cap: int = Field(default=3, ge=1)
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    grace_seconds: float = Field(default=10.0, ge=0)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_cap_seconds: float = Field(default=300.0, ge=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    max_runtime_seconds: float = Field(default=6 * 3600, gt=0)
    progress_interval: float = Field(default=0.25, gt=0)
    store_retry_seconds: float = Field(
        default=60.0, ge=0, description="how long a worker retries a transient store error"
    )
    sweep_interval_seconds: float = Field(
        default=300.0, gt=0, description="how often leftover files are swept"
    )
    sweep_grace_seconds: float = Field(
        default=900.0, ge=0, description="age before a leftover file counts as garbage"
    )

    max_parts: int = Field(default=1000, ge=1, description="most files one export may split into")
    sources: str | None = Field(
        default=None, description="SQL sources as JSON, same shape as [sources] in exportd.toml"
    )
    sources_file: Path | None = Field(
        default=None, description="the TOML file with [sources]; default ./exportd.toml if present"
    )
    sql_statement_timeout: float = Field(
        default=300.0, gt=0, description="seconds; a source's statement_timeout overrides it"
    )
    sql_chunk_rows: int = Field(default=10_000, ge=1, description="rows per fetched chunk")
    templates_dir: Path | None = Field(
        default=None, description="folder of Jinja2 templates for the document exporter"
    )

    max_active_per_owner: int = Field(default=20, ge=1, description="queued + running")
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_size: int = Field(default=100, ge=1)
    link_ttl_seconds: int = Field(default=900, ge=1, description="signed download links")
    max_manual_retries: int = Field(
        default=5, ge=0, description="how often one job may be retried by hand"
    )
    artifact_ttl: Duration = Field(
        default=7 * 86400, gt=0, description="how long files are kept by default (7d)"
    )
    job_retention: Duration = Field(
        default=30 * 86400, gt=0, description="finished jobs older than this are deleted (30d)"
    )
    progress_retention: Duration = Field(
        default=86400,
        gt=0,
        description="progress events of jobs finished longer ago are deleted (1d)",
    )
    owner_storage_quota: Size = Field(
        default=2**30, ge=0, description="bytes an owner may keep stored (1 GiB)"
    )

    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible server, e.g. http://127.0.0.1:8333 (default: AWS)"
    )
    s3_region: str | None = Field(default=None, description="default: boto3's (AWS_REGION, …)")
    s3_access_key_id: str | None = Field(
        default=None, description="default: boto3's credential chain (AWS_*, profile, role)"
    )
    s3_secret_access_key: str | None = Field(default=None, repr=False)
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = Field(
        default=None, description="default: path with an endpoint URL, else auto"
    )
    s3_part_size: Size = Field(
        default=16 * 2**20,
        ge=MIN_PART_SIZE,
        le=MAX_PART_SIZE,
        description="bytes per multipart part, at least 5 MiB (16 MiB)",
    )
    s3_downloads: Literal["presigned", "proxy"] = Field(
        default="presigned",
        description="presigned: redirect to the bucket; proxy: stream through exportd",
    )

    max_ttl_seconds: int = Field(
        default=365 * 86400,
        ge=60,
        le=2**31 - 1,
        description="the longest `ttl_seconds` an export may ask for (default 365 days)",
    )
    max_output_bytes: int = Field(
        default=50 * 2**30,
        ge=1,
        le=2**63 - 1,
        description="bytes one export may write in all (default 50 GiB); past it the job "
        "fails with `too_large`",
    )
    synthetic_max_rows: int = Field(
        default=100_000_000,
        ge=0,
        le=10_000_000_000,
        description="the most rows one `synthetic` export may ask for",
    )
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    event_poll_interval: float = Field(default=0.1, gt=0, description="SSE fallback polling")
    session_ttl_seconds: int = Field(
        default=12 * 3600, ge=60, description="how long a web page sign-in lasts"
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated IPs or networks whose X-Forwarded-Proto is believed",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="the base of links in webhooks and e-mails; default http://{host}:{port}",
    )
    webhook_allow_private: bool = Field(
        default=False, description="allow webhook URLs on private, loopback, link-local addresses"
    )
    webhook_retry_schedule: Schedule = Field(
        default=[5, 300, 1800, 7200, 18000, 36000, 36000],
        min_length=1,
        max_length=20,
        description="delays before each retry of a failed message (jittered ±15 %)",
    )
    webhook_secret_grace: Duration = Field(
        default=86400, ge=0, description="how long a rotated-out secret still signs (1d)"
    )
    webhook_disable_after: Duration = Field(
        default=5 * 86400, gt=0, description="an endpoint failing this long is disabled (5d)"
    )
    webhook_max_per_owner: int = Field(default=20, ge=1)
    delivery_concurrency: int = Field(
        default=8, ge=0, le=64, description="messages sent at once per process; 0: none here"
    )
    delivery_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="per connect, write, read of one send"
    )
    delivery_lease_seconds: float = Field(
        default=120.0, gt=0, description="how long a process holds a message it sends"
    )
    smtp_url: str | None = Field(
        default=None, description="smtp://user:pass@host:port[?starttls=true] or smtps://…"
    )
    mail_from: str = Field(default="exportd@localhost", max_length=320)
    owner_emails: OwnerEmails = Field(
        default_factory=dict,
        description="owner -> address, told when one of its webhooks is disabled",
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        if self.delivery_lease_seconds <= 3 * self.delivery_timeout_seconds:
            raise ValueError(
                "EXPORTD_DELIVERY_LEASE_SECONDS must exceed 3 x EXPORTD_DELIVERY_TIMEOUT_SECONDS "
                "(a send may take a connect, a write and a read timeout)"
            )
        return self

    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url or f"sqlite:///{self.home / 'exportd.db'}")

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "artifacts").resolve().as_uri()

    def resolved_scratch_dir(self) -> Path:
        return (self.scratch_dir or self.home / "tmp").resolve()

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


def normalize_database_url(url: str) -> str:
    """Accept URLs as users write them and pick the driver exportd uses (psycopg 3)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"not a database URL: {url!r}")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if base == "sqlite":
        if rest.startswith("/") and rest not in ("/", "/:memory:"):
            os.makedirs(os.path.dirname(rest[1:]) or ".", exist_ok=True)
        return f"sqlite://{rest}"
    raise ConfigurationError(
        f"unsupported database {scheme!r}: use postgresql://… or sqlite:///path"
    )


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """`"10.0.0.1, 192.168.0.0/16"` as networks; a bad entry is a `ValueError` naming it."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(networks)
