"""Settings, read from the environment (`EXPORTD_*`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from exportd.errors import ConfigurationError


class Settings(BaseSettings):
    """Every setting has an `EXPORTD_` environment variable, e.g. `EXPORTD_HOME`."""

    model_config = SettingsConfigDict(env_prefix="EXPORTD_", extra="ignore")

    home: Path = Field(default=Path(".exportd"), description="embedded database, artifacts, key")
    database_url: str | None = Field(default=None, description="default: SQLite file in home")
    storage_url: str | None = Field(default=None, description="default: home/artifacts")
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

    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url or f"sqlite:///{self.home / 'exportd.db'}")

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "artifacts").resolve().as_uri()

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
