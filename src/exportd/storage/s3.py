"""`S3Storage`: artifacts in an S3-compatible bucket, under `s3://bucket/prefix`.

An artifact key `{owner}/{job id}/{claim}/{name}` is the object `{prefix}/{key}`. Partials
are multipart uploads in progress (see `S3Partial`), so `partials` is the bucket's
`ListMultipartUploads` under the prefix and the tag of each is its key's claim segment;
`discard_partial(s)` aborts them. Every upload is recorded in the attached `UploadLog`
from its creation to its completion or abort."""

from __future__ import annotations

import io
import json
import logging
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from exportd.errors import (
    ArtifactNotFound,
    ConfigurationError,
    StorageAccessDenied,
    StorageBucketMissing,
    StorageError,
)
from exportd.storage.base import ArtifactStorage, PartialFile, StoredFile, UploadLog
from exportd.storage.s3_client import (
    S3Location,
    S3Options,
    error_code,
    make_client,
    storage_error,
)
from exportd.storage.s3_partial import SHA256_META, S3Partial

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

SENDERS = 16
"""Threads sending parts, shared by the partials of a process (each has one in flight)."""
DELETE_BATCH = 1000
"""The most keys one DeleteObjects request takes."""
MAX_PRESIGN_SECONDS = 7 * 86400
"""SigV4 presigned URLs live a week at most."""
GONE_UPLOAD = frozenset({"NoSuchUpload", "404", "NotFound"})


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid artifact key {key!r}")
    return key


def claim_segment(key: str) -> str:
    """The claim id a key is written under: its third segment ('' if it has none)."""
    parts = key.split("/")
    return parts[2] if len(parts) >= 4 else ""


class S3Reader(io.RawIOBase):
    """A GetObject body as a binary file; read errors are `StorageError`s."""

    def __init__(self, body: Any, describe: str) -> None:
        self._body = body
        self._describe = describe

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
        except Exception as exc:
            raise storage_error(exc, f"read {self._describe}") from exc
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage(ArtifactStorage):
    def __init__(
        self, location: S3Location, options: S3Options, client: S3Client | None = None
    ) -> None:
        self.location = location
        self.options = options
        self.client = client if client is not None else make_client(options)
        self.log: UploadLog | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._writing: dict[str, weakref.WeakSet[S3Partial]] = {}

    @classmethod
    def open(cls, url: str, options: S3Options) -> S3Storage:
        """The storage for `url`, once its bucket answers; a bucket that is missing,
        refused or out of reach is a `ConfigurationError` naming the URL."""
        storage = cls(S3Location.parse(url), options)
        storage.check()
        return storage

    def ping(self) -> None:
        """The bucket answers (`HEAD`), for readiness checks."""
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            raise storage_error(exc, f"reach the bucket of {self.location.url}") from exc

    def check(self) -> None:
        url = self.location.url
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            error = storage_error(exc, f"reach the bucket of {url}")
            if isinstance(error, StorageBucketMissing | ArtifactNotFound):
                raise ConfigurationError(
                    f"the bucket {self.location.bucket!r} of EXPORTD_STORAGE_URL={url} does "
                    "not exist: create it first"
                ) from exc
            if isinstance(error, StorageAccessDenied):
                raise ConfigurationError(
                    f"access to the bucket of EXPORTD_STORAGE_URL={url} is denied: check "
                    f"the credentials and that they may list the bucket ({error})"
                ) from exc
            raise ConfigurationError(f"EXPORTD_STORAGE_URL={url}: {error}") from exc

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(SENDERS, thread_name_prefix="exportd-s3")
            return self._executor

    def attach(self, log: UploadLog) -> None:
        self.log = log

    def _describe(self, key: str) -> str:
        return f"s3://{self.location.bucket}/{self.location.object_name(key)}"

    # -- partials ---------------------------------------------------------------------

    def open_partial(self, key: str, *, tag: str) -> S3Partial:
        check_key(key)
        if not tag or claim_segment(key) != tag:
            raise StorageError(f"key {key!r} is not under the claim {tag!r}")
        partial = S3Partial(self, key, tag)
        with self._lock:
            siblings = list(self._writing.setdefault(tag, weakref.WeakSet()))
            self._writing[tag].add(partial)
        for sibling in siblings:  # the attempt moved on: keep their buffers out of memory
            sibling.park()
        return partial

    def forget(self, partial: S3Partial) -> None:
        """The partial ended: no longer one of its attempt's open files."""
        with self._lock:
            group = self._writing.get(partial.tag)
            if group is not None:
                group.discard(partial)
                if not group:
                    del self._writing[partial.tag]

    def tag_sha256(self, name: str, sha256: str) -> None:
        """Tag a completed object with its sha256; a failure is logged, not raised: the
        artifact row holds the checksum that counts."""
        try:
            self.client.put_object_tagging(
                Bucket=self.location.bucket,
                Key=name,
                Tagging={"TagSet": [{"Key": SHA256_META, "Value": sha256}]},
            )
        except Exception:
            log.warning("could not tag s3 object %s with its sha256", name, exc_info=True)

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.location.bucket,
                Key=self.location.object_name(key),
                UploadId=upload_id,
            )
        except Exception as exc:
            if error_code(exc) not in GONE_UPLOAD:
                raise storage_error(exc, f"abort the upload of {self._describe(key)}") from exc
        if self.log is not None:
            self.log.upload_ended(key)

    def partials(self) -> Iterator[PartialFile]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.root):
                for upload in page.get("Uploads", []):
                    key = self.location.key_of(upload["Key"])
                    handle = json.dumps([key, upload["UploadId"]])
                    yield PartialFile(claim_segment(key), upload["Initiated"], handle)
        except Exception as exc:
            raise storage_error(exc, f"list the uploads in {self.location.url}") from exc

    def discard_partial(self, partial: PartialFile) -> None:
        try:
            key, upload_id = json.loads(partial.handle)
        except ValueError as exc:
            raise StorageError(f"not an upload: {partial.handle!r}") from exc
        self.abort_upload(str(key), str(upload_id))

    def discard_partials(self, tag: str) -> int:
        mine = [p for p in self.partials() if p.tag == tag]
        for partial in mine:
            self.discard_partial(partial)
        return len(mine)

    # -- published files ----------------------------------------------------------------

    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        name = self.location.object_name(check_key(key))
        try:
            if offset > 0:
                got = self.client.get_object(
                    Bucket=self.location.bucket, Key=name, Range=f"bytes={offset}-"
                )
            else:
                got = self.client.get_object(Bucket=self.location.bucket, Key=name)
        except Exception as exc:
            if error_code(exc) == "InvalidRange":  # at or past the end of an existing object
                return io.BytesIO(b"")
            raise storage_error(exc, f"read {self._describe(key)}") from exc
        return cast(BinaryIO, S3Reader(got["Body"], self._describe(key)))

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(
                Bucket=self.location.bucket, Key=self.location.object_name(check_key(key))
            )
        except Exception as exc:
            raise storage_error(exc, f"look up {self._describe(key)}") from exc
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(
                Bucket=self.location.bucket, Key=self.location.object_name(check_key(key))
            )
        except Exception as exc:
            raise storage_error(exc, f"delete {self._describe(key)}") from exc

    def delete_prefix(self, prefix: str) -> int:
        keys = [f.key for f in self.files(check_key(prefix.rstrip("/")) + "/")]
        for start in range(0, len(keys), DELETE_BATCH):
            self._delete_many(keys[start : start + DELETE_BATCH])
        return len(keys)

    def _delete_many(self, keys: list[str]) -> None:
        objects = [{"Key": self.location.object_name(k)} for k in keys]
        try:
            answer = self.client.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": objects, "Quiet": True},  # type: ignore[typeddict-item]
            )
        except Exception as exc:
            raise storage_error(exc, f"delete {len(keys)} files in {self.location.url}") from exc
        failed = answer.get("Errors", [])
        if failed:
            first = failed[0]
            raise StorageError(
                f"cannot delete {len(failed)} files in {self.location.url}, e.g. "
                f"{first.get('Key')}: {first.get('Code')} ({first.get('Message')})"
            )

    def files(self, prefix: str = "") -> Iterator[StoredFile]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.root + prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key = self.location.key_of(item["Key"])
                    yield StoredFile(key, int(item["Size"]), _aware(item["LastModified"]))
        except Exception as exc:
            raise storage_error(exc, f"list the files in {self.location.url}") from exc

    def presign(
        self, key: str, *, expires_in: int, disposition: str, content_type: str | None = None
    ) -> str:
        params = {
            "Bucket": self.location.bucket,
            "Key": self.location.object_name(check_key(key)),
            "ResponseContentDisposition": disposition,
        }
        if content_type:
            params["ResponseContentType"] = content_type
        try:
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=min(expires_in, MAX_PRESIGN_SECONDS)
            )
        except Exception as exc:
            raise storage_error(exc, f"sign a link to {self._describe(key)}") from exc


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
