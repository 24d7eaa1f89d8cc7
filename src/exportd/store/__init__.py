"""The SQL job store: `open_store(url)` picks the dialect's implementation."""

from __future__ import annotations

from exportd.config import normalize_database_url
from exportd.errors import ConfigurationError
from exportd.store.attempts import Rescued
from exportd.store.base import ClaimRequest
from exportd.store.postgres import PostgresJobStore
from exportd.store.sql import Page, SqlJobStore
from exportd.store.sqlite import SqliteJobStore

__all__ = [
    "ClaimRequest",
    "Page",
    "PostgresJobStore",
    "Rescued",
    "SqlJobStore",
    "SqliteJobStore",
    "open_store",
]


def open_store(url: str) -> SqlJobStore:
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        return SqliteJobStore.connect(url)
    if url.startswith("postgresql"):
        return PostgresJobStore.connect(url)
    raise ConfigurationError(f"unsupported database URL {url!r}")
