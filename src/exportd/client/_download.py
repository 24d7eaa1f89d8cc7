"""The transport-free part of `download`: a `<target>.part` file with a running sha256
that becomes `<target>` only once verified, and the Range/If-Range bookkeeping that
resumes an interrupted transfer."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from exportd.client._exceptions import ChecksumMismatch, DownloadError
from exportd.client._models import Artifact

CHUNK = 256 * 1024
MAX_FAILURES = 5
"""Broken transfers in a row (without a byte of progress) before giving up."""
CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes written, total bytes or None) as a download advances."""


class PartFile:
    """Bytes of a file being received, in `<target>.part`, and their sha256 so far."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.part = target.with_name(target.name + ".part")
        self.size = 0
        self._hash = hashlib.sha256()
        self._file: BinaryIO | None = None

    def open(self, *, resume: bool) -> int:
        """Open for appending; with `resume`, keep (and hash) bytes a previous run left.
        Returns how many bytes are kept."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._hash, self.size = hashlib.sha256(), 0
        if resume and self.part.exists():
            with open(self.part, "rb") as existing:
                while chunk := existing.read(CHUNK):
                    self._hash.update(chunk)
                    self.size += len(chunk)
        self._file = open(self.part, "ab" if self.size else "wb")  # noqa: SIM115 - closed by close/commit
        return self.size

    def restart(self) -> None:
        """Drop what was received and start again from byte 0."""
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._hash, self.size = hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, expected: set[str]) -> Path:
        """Move the part into place if its sha256 is every `expected` value; otherwise
        delete it and raise `ChecksumMismatch`."""
        self.close(sync=True)
        actual = self._hash.hexdigest()
        wrong = sorted(e for e in expected if e.lower() != actual)
        if wrong:
            self.part.unlink(missing_ok=True)
            raise ChecksumMismatch(str(self.target), wrong[0], actual)
        os.replace(self.part, self.target)
        return self.target

    def close(self, *, sync: bool = False) -> None:
        """Close the file, keeping a non-empty part on disk (a later download resumes it)."""
        if self._file is not None:
            if sync:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if self.size == 0 and not sync:
                self.part.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)


class Transfer:
    """One file being fetched into a `PartFile`, over as many requests as it takes."""

    def __init__(
        self, part: PartFile, artifact: Artifact | None, on_progress: ProgressCallback | None
    ) -> None:
        self.part = part
        self.artifact = artifact
        self.expected: set[str] = {artifact.sha256} if artifact else set()
        self.total: int | None = artifact.size if artifact else None
        self.etag: str | None = None
        self.failures = 0
        self.on_progress = on_progress

    @property
    def complete(self) -> bool:
        return self.total is not None and self.part.size >= self.total

    def headers(self) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity", "Accept": "*/*"}
        if self.part.size > 0:
            headers["Range"] = f"bytes={self.part.size}-"
            if self.etag:
                headers["If-Range"] = self.etag
        return headers

    def begin(self, response: httpx.Response) -> bool:
        """Read the answer's headers before its body: True to write the body. A 206
        continues at our offset, a 200 (the file changed, or no range support) starts
        over; a 416 or a 206 at another offset means asking again (False)."""
        checksum = response.headers.get("x-checksum-sha256")
        if checksum:
            self.expected.add(checksum.lower())
        status = response.status_code
        if status == 416:
            size = _content_range(response)[2]
            if size is None or self.part.size != size:
                self.part.restart()
            self.total = size
            return False
        self.etag = response.headers.get("etag") or self.etag
        if status == 206:
            start, _, size = _content_range(response)
            if start != self.part.size:
                self.part.restart()
                return False
        elif status == 200:
            self.part.restart()
            length = response.headers.get("content-length")
            size = int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(f"unexpected answer {status} for a file")
        if size is not None:
            self.total = size
        self.report()
        return True

    def write(self, chunk: bytes) -> None:
        self.part.write(chunk)
        self.failures = 0
        self.report()

    def report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.part.size, self.total)

    def broken(self) -> bool:
        """A request broke off or must be sent again: True when it is time to give up."""
        self.failures += 1
        return self.failures > MAX_FAILURES

    def ended(self) -> None:
        """The body ended cleanly; without a known length, that is the whole file."""
        if self.total is None:
            self.total = self.part.size

    def result(self, path: Path) -> Artifact:
        if self.artifact is not None:
            return self.artifact
        digest = next(iter(self.expected), "")
        return Artifact(name=path.name, size=self.part.size, sha256=digest)

    def finish(self) -> Path:
        if self.total is not None and self.part.size != self.total:
            self.part.discard()
            raise DownloadError(f"received {self.part.size} bytes, expected {self.total}")
        return self.part.commit(self.expected)


def _content_range(response: httpx.Response) -> tuple[int | None, int | None, int | None]:
    match = CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if match is None:
        raise DownloadError("a partial answer without a valid Content-Range")
    first, last, size = match.groups()
    return (
        int(first) if first else None,
        int(last) if last else None,
        int(size) if size and size != "*" else None,
    )


def target_path(path: str | os.PathLike[str], artifact: Artifact | None) -> Path:
    """`path` itself, or the artifact's name inside it when it is a directory."""
    target = Path(path)
    if target.is_dir() or str(path).endswith(os.sep):
        if artifact is None:
            raise DownloadError(f"{path} is a directory; pass name= or a file path")
        return target / Path(artifact.name).name
    return target
