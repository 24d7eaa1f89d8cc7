"""The artifact storage seam.

Contract:
- An artifact is first written to a *partial* place that no reader ever sees; `publish`
  makes it visible under its final key in one atomic step (a rename, or a multipart
  upload's completion). A partial that is discarded, or whose writer dies, is never seen.
- Keys are `/`-separated relative paths. An attempt writes only under its own claim's
  prefix, `claim_prefix(owner, job id, claim id)`; a claim id is never reused, so no two
  attempts ever write, publish or delete the same key.
- Every partial is opened with a `tag`, the claim id of the attempt writing it, so that
  whatever a dead attempt left behind can be found (`partials`) and removed
  (`discard_partials`) without knowing its keys.
- Errors are `StorageError`s: `StorageFull` when the medium is out of space (the attempt
  is retried later), `ArtifactNotFound` for a key that was never published or was
  deleted. Deleting what is already gone is not an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol
from urllib.parse import quote

from exportd.errors import StorageError


def key_segment(text: str) -> str:
    """`text` as one key segment: percent-encoded, never empty and never starting with a
    dot (so never `.`, `..` or a hidden name)."""
    quoted = quote(text, safe="-_@+=,~")
    if not quoted:
        return "_"
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted


def claim_prefix(owner: str, job_id: str, claim_id: str) -> str:
    """Where one attempt writes: `{owner}/{job id}/{claim id}`."""
    return f"{key_segment(owner)}/{key_segment(job_id)}/{key_segment(claim_id)}"


@dataclass(frozen=True)
class StoredFile:
    """A published file, as listed for sweeps."""

    key: str
    size: int
    modified_at: datetime


@dataclass(frozen=True)
class PartialFile:
    """A partial file still on the storage: the attempt (`tag`) that opened it."""

    tag: str
    modified_at: datetime
    handle: str
    """What `discard_partial` needs to remove exactly this one."""


class UploadLog(Protocol):
    """Where an object storage records its multipart uploads (the job store implements
    it): so an upload whose attempt died can be aborted, and a later version can resume
    one from its committed parts."""

    def upload_started(self, storage_key: str, claim_id: str, upload_id: str) -> None: ...

    def upload_part(self, storage_key: str, number: int, etag: str, size: int) -> None: ...

    def upload_ended(self, storage_key: str) -> None: ...


class Partial(ABC):
    """A file being written. `write` streams bytes; `publish` or `discard` ends it."""

    key: str

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Append bytes; raises `StorageFull` when out of space, `StorageError` otherwise."""

    @abstractmethod
    def publish(self) -> None:
        """Make the bytes written so far visible under `key`, atomically."""

    @abstractmethod
    def discard(self) -> None:
        """Drop the partial file. Never raises: it removes the partial even when closing
        it fails (a full disk fails the flush), and does nothing if it is already gone."""


class ArtifactStorage(ABC):
    def attach(self, log: UploadLog) -> None:  # noqa: B027 - optional: most storages have no uploads
        """Record multipart uploads in `log` (storages that have none ignore it)."""

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
    def delete_prefix(self, prefix: str) -> int:
        """Remove every published file under `prefix/`; returns how many there were."""

    @abstractmethod
    def discard_partials(self, tag: str) -> int:
        """Remove every partial file opened with `tag`; returns how many there were."""

    @abstractmethod
    def partials(self) -> Iterator[PartialFile]:
        """Every partial file still present, in no particular order."""

    @abstractmethod
    def discard_partial(self, partial: PartialFile) -> None:
        """Remove one listed partial; gone already is not an error."""

    @abstractmethod
    def files(self, prefix: str = "") -> Iterator[StoredFile]:
        """Published files under `prefix` (partials excluded), in no particular order."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Published keys under `prefix` (partials excluded)."""
        return (file.key for file in self.files(prefix))

    def ping(self) -> None:
        """Raise `StorageError` unless the storage answers (readiness checks). The default
        lists the partials, which every storage keeps at its root; an implementation may
        override it with a cheaper or stricter look (an S3 bucket's `HEAD`)."""
        try:
            next(iter(self.partials()), None)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"the artifact storage does not answer: {exc}") from exc
