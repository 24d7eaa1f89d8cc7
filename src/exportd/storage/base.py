"""The artifact storage seam.

Contract: an artifact is first written to a *partial* place that no reader ever sees,
then `publish` makes it visible under its final key in one atomic step (a rename, or a
multipart upload's completion). `discard_partials(tag)` removes whatever a dead attempt
left behind; the tag names one attempt (`<job id>.<attempt>`). Keys are
`/`-separated relative paths.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO


class Partial(ABC):
    """A file being written. `write` streams bytes; `publish` or `discard` ends it."""

    key: str

    @abstractmethod
    def write(self, data: bytes) -> int: ...

    @abstractmethod
    def publish(self) -> None:
        """Make the bytes written so far visible under `key`, atomically."""

    @abstractmethod
    def discard(self) -> None:
        """Drop the partial file; never raises if it is already gone."""


class ArtifactStorage(ABC):
    @abstractmethod
    def open_partial(self, key: str, *, tag: str) -> Partial: ...

    @abstractmethod
    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        """Raises `ArtifactNotFound` if the key was never published or was deleted."""

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a published file; a missing key is not an error."""

    @abstractmethod
    def discard_partials(self, tag: str) -> int:
        """Remove every partial file opened with `tag`; returns how many there were."""

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Published keys under `prefix` (partials excluded)."""
