"""`Output`: writes the files an `OutputPlan` describes and publishes them.

Every file is first written to a storage partial (or, for bundle members, to a private
temporary file); nothing is visible before `publish`. `publish` closes the writers,
writes the manifest or the zip, and publishes every partial; if any step fails, what was
already published is deleted and the rest discarded, so an export publishes all of its
files or none. `discard` drops everything (a failed or cancelled attempt)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

import pyarrow as pa

from exportd.errors import PermanentError
from exportd.formats.base import FormatSpec, TabularWriter
from exportd.formats.bundle import (
    MANIFEST_NAME,
    MANIFEST_TYPE,
    ZIP_TYPE,
    FileEntry,
    manifest_bytes,
    write_zip,
)
from exportd.formats.document import Document, write_document
from exportd.formats.plan import OutputPlan, too_many_parts
from exportd.formats.sink import ByteBudget, HashingSink, Stream
from exportd.storage import ArtifactStorage, Partial

SCRATCH_PREFIX = "exportd-"
"""Scratch folders are `exportd-<claim id>-<random>`."""

BYTE_LIMIT_CHUNK = 4096
"""With a byte limit, batches are written in slices of this many rows, so a part
overshoots the limit by at most one slice (plus what a compressor holds back)."""


class Target(Protocol):
    def write(self, data: bytes) -> int: ...

    def publish(self) -> None: ...

    def discard(self) -> None: ...


class TempTarget:
    """A bundle member: a private temporary file, read back when the zip is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in publish/discard

    def write(self, data: bytes) -> int:
        assert self._file is not None
        return self._file.write(data)

    def publish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.publish()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class OutputFile:
    """A published file: its manifest entry and its storage key."""

    entry: FileEntry
    key: str


class _Part:
    """One file being written; `tabular` parts get the format's writer, a document's part
    is written whole by `write_document`."""

    def __init__(
        self,
        name: str,
        fmt: FormatSpec,
        target: Target,
        compression: str,
        budget: ByteBudget,
        *,
        tabular: bool = True,
        scratch: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        self.fmt = fmt
        self.target = target
        self.sink = HashingSink(target, budget)
        self.stream = Stream(self.sink, "none" if fmt.container else compression, scratch=scratch)
        writer = fmt.writer if tabular else None
        self.writer: TabularWriter | None = (
            writer(self.stream, compression=compression) if writer is not None else None
        )
        self.rows = 0

    def entry(self) -> FileEntry:
        return FileEntry(
            self.name, self.sink.size, self.sink.sha256, self.rows, self.fmt.content_type
        )


def _temp_path(part: _Part) -> Path:
    assert isinstance(part.target, TempTarget)
    return part.target.path


class Output:
    """`max_bytes` caps what the export writes in all (its files, or a bundle's members
    and, separately, the zip that repeats them): past it the attempt fails permanently
    with `too_large`, and the runner's `discard` leaves nothing behind."""

    def __init__(
        self,
        plan: OutputPlan,
        storage: ArtifactStorage,
        *,
        key_prefix: str,
        tag: str,
        workdir: Path | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.plan = plan
        self.storage = storage
        self.key_prefix = key_prefix
        self.tag = tag
        self.max_bytes = max_bytes
        self._budget = ByteBudget(max_bytes)
        # Scratch files (bundle members, spreadsheet rows) live in a folder named after
        # the claim, so a sweep can tell a dead attempt's leftovers from a live one's.
        self.workdir = workdir
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._tmp = self._scratch_dir() if plan.bundle else None
        self._current: dict[tuple[str | None, str], _Part] = {}
        self._counts: dict[tuple[str | None, str], int] = {}
        self._finished: list[_Part] = []
        self._partials: list[Partial] = []
        self._temps: list[TempTarget] = []
        self._published: list[str] = []

    # -- writing ------------------------------------------------------------------------

    @property
    def accepts_encoded(self) -> str | None:
        """The format in which already encoded bytes may be written as they are: the
        single format of an unsharded, unbundled tabular export, else None."""
        plan = self.plan
        if plan.bundle or plan.sharded or plan.document:
            return None
        return plan.formats[0].name

    def write(self, batch: pa.RecordBatch, member: str | None = None) -> None:
        if self.plan.bundle is False and member is not None:
            raise PermanentError("only bundles hold named files", code="invalid_output")
        limit = self.plan.max_bytes_per_file
        step = BYTE_LIMIT_CHUNK if limit is not None else max(batch.num_rows, 1)
        for fmt in self.plan.formats:
            offset = 0
            while offset < batch.num_rows or (offset == 0 and batch.num_rows == 0):
                part = self._part(member, fmt)
                room = self._room(part)
                piece = batch.slice(offset, min(room, step))
                assert part.writer is not None
                part.writer.write(piece)
                part.rows += piece.num_rows
                offset += max(piece.num_rows, 1)
                if self._full(part):
                    self._close(member, fmt)

    def write_encoded(self, data: bytes, rows: int) -> None:
        """Bytes already in the output format (see `accepts_encoded`)."""
        fmt = self.plan.formats[0]
        part = self._part(None, fmt)
        part.stream.write(data)
        part.rows += rows

    def write_document(self, document: Document) -> None:
        fmt = self.plan.formats[0]
        part = self._part(None, fmt)
        write_document(document, fmt.name, part.stream)
        self._close(None, fmt)

    def _room(self, part: _Part) -> int:
        limit = self.plan.max_rows_per_file
        return limit - part.rows if limit is not None else 1 << 62

    def _full(self, part: _Part) -> bool:
        plan = self.plan
        if plan.max_rows_per_file is not None and part.rows >= plan.max_rows_per_file:
            return True
        return plan.max_bytes_per_file is not None and part.sink.size >= plan.max_bytes_per_file

    def _part(self, member: str | None, fmt: FormatSpec) -> _Part:
        key = (member, fmt.name)
        part = self._current.get(key)
        if part is None:
            part = self._current[key] = self._open(member, fmt)
        return part

    def _open(self, member: str | None, fmt: FormatSpec) -> _Part:
        plan = self.plan
        number = None
        if plan.sharded:
            if len(self._finished) + len(self._current) >= plan.max_parts:
                raise too_many_parts(plan.max_parts)
            number = self._counts.get((member, fmt.name), 0)
            self._counts[(member, fmt.name)] = number + 1
        name = plan.file_name(fmt, member, number)
        target = self._target(name)
        return _Part(
            name,
            fmt,
            target,
            plan.compression,
            self._budget,
            tabular=not plan.document,
            scratch=self._scratch_path,
        )

    def _target(self, name: str) -> Target:
        if self._tmp is not None:
            temp = TempTarget(Path(self._tmp.name) / f"{len(self._temps)}.member")
            self._temps.append(temp)
            return temp
        return self._partial(name)

    def _partial(self, name: str) -> Partial:
        partial = self.storage.open_partial(self._key(name), tag=self.tag)
        self._partials.append(partial)
        return partial

    def _key(self, name: str) -> str:
        return f"{self.key_prefix}/{name}"

    def _close(self, member: str | None, fmt: FormatSpec) -> None:
        part = self._current.pop((member, fmt.name))
        try:
            if part.writer is not None:
                part.writer.close()
            else:
                part.stream.close()
        except BaseException:
            part.stream.abort()  # a compressing thread stops; discard removes the file
            raise
        self._finished.append(part)

    # -- ending ---------------------------------------------------------------------------

    def publish(self, exported_at: datetime) -> list[OutputFile]:
        """Close every file, add the manifest or build the zip, publish it all."""
        try:
            self._close_all()
            if self.plan.bundle:
                return self._publish_bundle(exported_at)
            files = [OutputFile(part.entry(), self._key(part.name)) for part in self._finished]
            if self.plan.sharded:
                files.append(self._write_manifest(exported_at, [f.entry for f in files]))
            self._publish_partials()
            self._cleanup()
            return files
        except BaseException:
            self.discard()
            raise

    def _publish_partials(self) -> None:
        for partial in self._partials:
            partial.publish()
            self._published.append(partial.key)

    def _close_all(self) -> None:
        if not self._finished and not self._current and not self.plan.document:
            for fmt in self.plan.formats:
                self._part(None, fmt)
        for member, name in list(self._current):
            self._close(member, next(f for f in self.plan.formats if f.name == name))

    def _write_manifest(self, exported_at: datetime, entries: list[FileEntry]) -> OutputFile:
        data = manifest_bytes(self.plan.job_id, exported_at, entries)
        return self._write_whole(MANIFEST_NAME, MANIFEST_TYPE, lambda stream: stream.write(data))

    def _publish_bundle(self, exported_at: datetime) -> list[OutputFile]:
        for temp in self._temps:
            temp.publish()
        members = [
            (part.entry(), _temp_path(part), self._deflate(part.fmt)) for part in self._finished
        ]
        manifest = manifest_bytes(self.plan.job_id, exported_at, [m[0] for m in members])
        bundle = self._write_whole(
            self.plan.bundle_name,
            ZIP_TYPE,
            lambda stream: write_zip(stream, members, manifest),
            ByteBudget(self.max_bytes),
        )
        self._publish_partials()
        self._cleanup()
        return [bundle]

    def _deflate(self, fmt: FormatSpec) -> bool:
        return self.plan.compression == "none" and not fmt.container

    def _write_whole(
        self,
        name: str,
        content_type: str,
        fill: Callable[[Stream], object],
        budget: ByteBudget | None = None,
    ) -> OutputFile:
        partial = self._partial(name)
        sink = HashingSink(partial, budget or self._budget)
        stream = Stream(sink, "none")
        fill(stream)
        stream.close()
        entry = FileEntry(name, sink.size, sink.sha256, None, content_type)
        return OutputFile(entry, self._key(name))

    def discard(self) -> None:
        """Drop every partial and delete whatever was already published."""
        for key in self._published:
            self.storage.delete(key)
        self._published.clear()
        for part in self._current.values():
            if part.writer is not None:
                part.writer.abort()
            part.stream.abort()
        self._current.clear()
        targets: list[Target] = [*self._partials, *self._temps]
        for target in targets:
            # best effort: the rescuer's sweep by tag removes any leftover partial
            with contextlib.suppress(Exception):
                target.discard()
        self._cleanup()

    def _scratch_path(self) -> str:
        return self._scratch_dir().name

    def _scratch_dir(self) -> tempfile.TemporaryDirectory[str]:
        if self._scratch is None:
            if self.workdir is not None:
                self.workdir.mkdir(parents=True, exist_ok=True)
            self._scratch = tempfile.TemporaryDirectory(
                prefix=f"{SCRATCH_PREFIX}{self.tag}-", dir=self.workdir
            )
        return self._scratch

    def _cleanup(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
        self._tmp = None
