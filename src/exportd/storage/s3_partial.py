"""`S3Partial`: one object being written to S3, in constant memory.

Bytes collect in a part buffer. When it holds a full part, the multipart upload is
created (and recorded in the `UploadLog`) and the part is sent from a background thread
while the next one fills, one part in flight at a time: memory stays at about two parts
whatever the size of the object. `publish` sends the rest as the last part and completes
the upload with `If-None-Match: *`, so the object appears whole, at once, and never over
another; an object that never filled a part is put in one conditional request instead.

The sha256 of the object is taken as the parts leave, in order. An object put in one
request carries it as `x-amz-meta-sha256`; a multipart one, whose metadata is fixed when
the upload is created, gets it as the object tag `sha256` after completion.

A partial that is `park`ed (its attempt moved on to writing another file) sends its part
buffer at once if it is big enough to be a part, else moves it to a temporary file:
an export of a thousand files does not hold a thousand buffers in memory."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from concurrent.futures import Future
from typing import IO, TYPE_CHECKING

from exportd.config import MIN_PART_SIZE
from exportd.errors import StorageError
from exportd.storage.base import Partial
from exportd.storage.s3_client import storage_error

if TYPE_CHECKING:
    from exportd.storage.s3 import S3Storage

log = logging.getLogger(__name__)

MAX_PARTS = 10_000
"""S3's limit on the parts of one upload."""
SHA256_META = "sha256"
TAG_META = "exportd-claim"


class PartBuffer:
    """The part being filled, never more than `part_size` bytes: in a bytearray (the
    buffer of the part sent before it, once that one is stored, so a long upload uses
    two buffers in all and the allocator never fragments), or in a temporary file once
    spilled."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self._memory = bytearray()
        self._spare: bytearray | None = None
        self._file: IO[bytes] | None = None
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size >= self.part_size

    @property
    def in_memory(self) -> int:
        """Bytes of memory held (the part being filled and a spare)."""
        return len(self._memory) + len(self._spare or b"")

    def fill(self, data: memoryview) -> int:
        """Append as much of `data` as the part has room for; returns how much."""
        count = min(len(data), self.part_size - self.size)
        piece = data[:count]
        if self._file is not None:
            self._file.write(piece)
        elif self.size + count <= len(self._memory):  # a recycled buffer: fill in place
            self._memory[self.size : self.size + count] = piece
        else:
            del self._memory[self.size :]
            self._memory += piece
        self.size += count
        return count

    def take_part(self) -> bytearray:
        """The full part, handed over as it is (not copied)."""
        assert self.full
        part = bytearray(self._read_file()) if self._file is not None else self._memory
        self._memory, self._spare, self.size = self._spare or bytearray(), None, 0
        return part

    def take(self) -> bytes:
        """Whatever the part holds (a last, short part), copied; the buffer is emptied
        and holds no memory (nor a spare) afterwards."""
        if self._file is not None:
            data = self._read_file()
        else:
            with memoryview(self._memory) as view:
                data = view[: self.size].tobytes()
        self._memory, self._spare, self.size = bytearray(), None, 0
        return data

    def recycle(self, part: bytes | bytearray) -> None:
        """A sent part's buffer, to be filled again."""
        if isinstance(part, bytearray) and len(part) == self.part_size and self._file is None:
            self._spare = part

    def _read_file(self) -> bytes:
        assert self._file is not None
        self._file.seek(0)
        data = self._file.read()
        self._file.close()
        self._file = None
        return data

    def spill(self) -> None:
        """Move the bytes to a temporary file (more writes append to it)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="exportd-part-")  # noqa: SIM115 - closed by take/close
            self._file.write(memoryview(self._memory)[: self.size])
            self._memory, self._spare = bytearray(), None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory, self._spare, self.size = bytearray(), None, 0


class S3Partial(Partial):
    def __init__(self, storage: S3Storage, key: str, tag: str) -> None:
        self.key = key
        self.tag = tag
        self._storage = storage
        self._name = storage.location.object_name(key)
        self._buffer = PartBuffer(storage.options.part_size)
        self._hash = hashlib.sha256()
        self.size = 0
        self.upload_id: str | None = None
        self._parts: list[tuple[int, str]] = []
        self._next_part = 1
        self._inflight: Future[None] | None = None
        self._inflight_part: bytes | bytearray = b""
        self._ended = False
        self._discarded = False

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    # -- writing ------------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        if self._discarded:  # late bytes of a failed writer (a zip closed as it is freed)
            return len(data)
        assert not self._ended, "partial already ended"
        view = memoryview(data)
        while view:
            taken = self._buffer.fill(view)
            view = view[taken:]
            if self._buffer.full:
                self._send()
        return len(data)

    def park(self) -> None:
        """Hold no part buffer in memory: its attempt is writing another file now."""
        if self._ended or not self._buffer.size:
            return
        if self._buffer.size >= MIN_PART_SIZE:
            self._send(self._buffer.take())
        else:
            self._buffer.spill()

    def _send(self, data: bytes | None = None) -> None:
        """Hand a part to the background sender once the part before it is stored:
        `data`, or else the full part buffer (whose place the stored part's buffer then
        takes, so the memory is reused)."""
        if self.upload_id is None:
            self._start()
        self.wait_sent()
        part = self._buffer.take_part() if data is None else data
        number, self._next_part = self._next_part, self._next_part + 1
        if number > MAX_PARTS:
            raise StorageError(
                f"{self.key}: more than {MAX_PARTS} parts; raise EXPORTD_S3_PART_SIZE"
            )
        self._inflight = self._storage.executor.submit(self._upload_part, number, part)
        self._inflight_part = part

    def _start(self) -> None:
        client = self._storage.client
        bucket = self._storage.location.bucket
        try:
            created = client.create_multipart_upload(
                Bucket=bucket, Key=self._name, Metadata={TAG_META: self.tag}
            )
        except Exception as exc:
            raise storage_error(exc, f"start the upload of {self._describe()}") from exc
        self.upload_id = created["UploadId"]
        if self._storage.log is not None:
            self._storage.log.upload_started(self.key, self.tag, self.upload_id)

    def _upload_part(self, number: int, data: bytes | bytearray) -> None:
        """Runs on the sender thread; parts of one partial go one at a time, in order."""
        assert self.upload_id is not None
        self._hash.update(data)
        self.size += len(data)
        try:
            sent = self._storage.client.upload_part(
                Bucket=self._storage.location.bucket,
                Key=self._name,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,  # type: ignore[arg-type]  # botocore sends any bytes-like as it is
            )
        except Exception as exc:
            raise storage_error(exc, f"upload part {number} of {self._describe()}") from exc
        self._parts.append((number, sent["ETag"]))
        if self._storage.log is not None:
            self._storage.log.upload_part(self.key, number, sent["ETag"], len(data))

    def wait_sent(self) -> None:
        """Wait for the part in flight; its error, if it failed, is raised here. Its
        buffer is then free to hold the next part."""
        inflight, self._inflight = self._inflight, None
        part, self._inflight_part = self._inflight_part, b""
        if inflight is not None:
            inflight.result()
            self._buffer.recycle(part)

    # -- ending ---------------------------------------------------------------------------

    def publish(self) -> None:
        assert not self._ended and not self._discarded, "partial already ended"
        if self.upload_id is None:
            self._put_whole()
        else:
            self._complete()
        self._ended = True
        self._storage.forget(self)

    def _put_whole(self) -> None:
        data = self._buffer.take()
        self._hash.update(data)
        self.size = len(data)
        try:
            self._storage.client.put_object(
                Bucket=self._storage.location.bucket,
                Key=self._name,
                Body=data,
                IfNoneMatch="*",
                Metadata={SHA256_META: self.sha256, TAG_META: self.tag},
            )
        except Exception as exc:
            raise storage_error(exc, f"publish {self._describe()}") from exc

    def _complete(self) -> None:
        if self._buffer.size:
            self._send(self._buffer.take())
        self.wait_sent()
        assert self.upload_id is not None
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self._parts)]
        try:
            self._storage.client.complete_multipart_upload(
                Bucket=self._storage.location.bucket,
                Key=self._name,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                IfNoneMatch="*",
            )
        except Exception as exc:
            raise storage_error(exc, f"publish {self._describe()}") from exc
        if self._storage.log is not None:
            self._storage.log.upload_ended(self.key)
        self._storage.tag_sha256(self._name, self.sha256)

    def discard(self) -> None:
        if self._ended or self._discarded:
            return
        self._discarded = True
        with contextlib.suppress(Exception):  # the part's own error no longer matters
            self.wait_sent()
        self._buffer.close()
        self._storage.forget(self)
        if self.upload_id is not None:
            try:
                self._storage.abort_upload(self.key, self.upload_id)
            except StorageError:  # recorded in the upload log: the uploads sweep aborts it
                log.warning("could not abort the upload of %s", self.key, exc_info=True)

    def _describe(self) -> str:
        return f"s3://{self._storage.location.bucket}/{self._name}"
