"""Artifact storage: `open_storage(url)` picks the implementation for a URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from exportd.errors import ConfigurationError
from exportd.storage.base import (
    ArtifactStorage,
    Partial,
    PartialFile,
    StoredFile,
    UploadLog,
    claim_prefix,
    key_segment,
)
from exportd.storage.local import LocalStorage
from exportd.storage.s3 import S3Storage
from exportd.storage.s3_client import S3Options

if TYPE_CHECKING:
    from exportd.config import Settings

__all__ = [
    "ArtifactStorage",
    "LocalStorage",
    "Partial",
    "PartialFile",
    "S3Options",
    "S3Storage",
    "StoredFile",
    "UploadLog",
    "claim_prefix",
    "key_segment",
    "open_storage",
]


def open_storage(url: str, settings: Settings | None = None) -> ArtifactStorage:
    """`file:///path` (or a plain path) is a `LocalStorage`; `s3://bucket/prefix` an
    `S3Storage` reached as `settings` say (`EXPORTD_S3_*`, default: the environment's),
    checked at once: a missing or refused bucket is a `ConfigurationError`."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "" and url:
        return LocalStorage(Path(url))
    if parsed.scheme == "s3":
        return S3Storage.open(url, s3_options(settings))
    raise ConfigurationError(
        f"unsupported storage URL {url!r}: use file:///path or s3://bucket/prefix"
    )


def s3_options(settings: Settings | None = None) -> S3Options:
    if settings is None:
        from exportd.config import Settings

        settings = Settings()
    return S3Options(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        addressing_style=settings.s3_addressing_style,
        part_size=settings.s3_part_size,
    )
