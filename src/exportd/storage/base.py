"""The artifact storage seam.

Contract:
- An artifact is first written to a *partial* place that no reader ever sees; `publish`
  makes it visible under its final key in one atomic step (a rename, or a multipart
  upload's completion). A partial that is discarded, or whose writer dies, is never seen:
  not by `open_read`, `size`, `files` or `keys`.
- Keys are `/`-separated relative paths. An attempt writes only under its own claim's
  prefix, `claim_prefix(owner, job id, claim id)`; a claim id is never reused, so no two
  attempts ever write, publish or delete the same key. A storage that can make the
  publish conditional (S3's `If-None-Match: *`) refuses a key that exists with
  `ArtifactExists` and leaves the existing object as it was.
- Every partial is opened with a `tag`, the claim id of the attempt writing it, so that
  whatever a dead attempt left behind can be found (`partials`) and removed
  (`discard_partials`) without knowing its keys. The tag is the third segment of the
  key (the claim prefix's last): a storage may rely on it, as S3's listing of uploads
  in progress shows their keys only. A storage may hold nothing of a partial
  until it has enough bytes to store (S3 keeps the first part in memory and starts the
  multipart upload when it is full, or puts the object in one request at publish):
  `partials` lists what the storage holds, so a partial appears there at the latest once
  one part of it is stored.
- Objects are immutable once published: their size, bytes and sha256 never change, so a
  reader may resume a download at any offset.
- One storage object serves every slot of a process: its methods may be called from
  several threads at once. A `Partial` is used by one thread at a time.
- Errors are `StorageError`s, never a driver's (botocore's, the OS's): `StorageFull` when
  the medium is out of space, `StorageUnavailable` when it did not answer, asked to slow
  down or failed on its side (both retried later), `StorageRefused` when it will keep
  refusing (access denied, unknown credentials, a missing bucket: the job fails at once),
  `ArtifactNotFound` for a key that was never published or was deleted. Deleting what is
  already gone is not an error. A storage whose bucket or folder cannot be used at all
  fails when it is opened, with a `ConfigurationError` naming its URL.
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
    one from its committed parts.

    `upload_started` is called once the upload exists and before any part of it is sent;
    `upload_part` after each part is committed (in part order); `upload_ended` once the
    upload is completed or aborted. The keys are the storage's keys (as passed to
    `open_partial`), not the object names an implementation derives from them."""

    def upload_started(self, storage_key: str, claim_id: str, upload_id: str) -> None: ...

    def upload_part(self, storage_key: str, number: int, etag: str, size: int) -> None: ...

    def upload_ended(self, storage_key: str) -> None: ...


class Partial(ABC):
    """A file being written. `write` streams bytes; `publish` or `discard` ends it."""

    key: str

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Append bytes; raises `StorageFull` when out of space, `StorageError` otherwise.
        Bytes may be buffered (or sent in the background): an error can surface at a
        later `write` or at `publish`. After `discard`, writes are dropped silently."""

    @abstractmethod
    def publish(self) -> None:
        """Make the bytes written so far visible under `key`, atomically. If it raises,
        nothing is visible under `key` (unless `ArtifactExists`: then what was there
        stays) and the caller discards the partial."""

    @abstractmethod
    def discard(self) -> None:
        """Drop the partial file. Never raises: it removes the partial even when closing
        it fails (a full disk fails the flush), and does nothing if it is already gone."""


class ArtifactStorage(ABC):
    def attach(self, log: UploadLog) -> None:  # noqa: B027 - optional: most storages have no uploads
        """Record multipart uploads in `log` (storages that have none ignore it)."""

    def abort_upload(self, key: str, upload_id: str) -> None:  # noqa: B027 - optional, as attach
        """Abort a multipart upload recorded in the `UploadLog` (the sweep's way to end
        those of dead attempts) and forget it there; one that is gone already is not an
        error. Storages without uploads never record any, so they have nothing to do."""

    def presign(
        self, key: str, *, expires_in: int, disposition: str, content_type: str | None = None
    ) -> str | None:
        """A URL that lets anyone holding it GET (with `Range`) the published `key`
        straight from the storage for `expires_in` seconds, answered with this
        `Content-Disposition` and `Content-Type`; or None when the storage has no such
        URLs (then exportd serves the file itself). Made without a request to the storage:
        it does not check that the key exists."""
        return None

    @abstractmethod
    def open_partial(self, key: str, *, tag: str) -> Partial: ...

    @abstractmethod
    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        """The published file from byte `offset` on (at or past the end: no bytes), as a
        binary file to `read` and `close` (also with `with`). Raises `ArtifactNotFound` if
        the key was never published or was deleted; reading raises `StorageError`."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The published file's size; `ArtifactNotFound` if there is none."""

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
