"""Artifact storage: `open_storage(url)` picks the implementation for a URL."""

from __future__ import annotations

from pathlib import Path
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

__all__ = [
    "ArtifactStorage",
    "LocalStorage",
    "Partial",
    "PartialFile",
    "StoredFile",
    "UploadLog",
    "claim_prefix",
    "key_segment",
    "open_storage",
]


def open_storage(url: str) -> ArtifactStorage:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "" and url:
        return LocalStorage(Path(url))
    raise ConfigurationError(f"unsupported storage URL {url!r}: use file:///path")
