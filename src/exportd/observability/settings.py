"""The observability settings, read from the environment like `exportd.config.Settings`
(`EXPORTD_LOG_FORMAT`, `EXPORTD_LOG_LEVEL`, `EXPORTD_METRICS_PUBLIC`,
`EXPORTD_METRICS_PORT`, `EXPORTD_METRICS_HOST`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["auto", "json", "console", "plain"]


class ObservabilitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPORTD_", extra="ignore")

    log_format: LogFormat = Field(
        default="auto",
        description="json: one JSON object a line; console: coloured, for people; plain: "
        "key=value lines; auto: console on a terminal, plain otherwise",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    metrics_public: bool = Field(
        default=False, description="serve the API's /metrics without an admin token"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="`exportd worker`: serve /metrics on this port"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address of the worker's port")
