"""`LocalStorage`: artifacts in a directory. Partials live in `<root>/.partial/` as
`<tag>.<random>.part` and are published with `os.replace`, which is atomic on one
filesystem."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from exportd.errors import ArtifactNotFound, StorageError, StorageFull
from exportd.jobs import new_id
from exportd.storage.base import ArtifactStorage, Partial, PartialFile, StoredFile

PARTIAL_DIR = ".partial"
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: OSError, doing: str) -> StorageError:
    """An OS error as the storage error it is: `StorageFull` when out of space."""
    if exc.errno in FULL:
        return StorageFull(f"no space left to {doing}: {exc.strerror}")
    return StorageError(f"cannot {doing}: {exc}")


class LocalPartial(Partial):
    def __init__(self, storage: LocalStorage, key: str, path: Path) -> None:
        self.key = key
        self._storage = storage
        self._path = path
        self._final = storage.path_of(key)
        # The final directories are made now, not at publish: the file's fsync then
        # carries them to disk on journaling filesystems, and publish pays only for the
        # rename (its directory syncs below find the new entries already written).
        self._created = _make_dirs(self._final.parent, storage.root)
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in publish/discard
        self._discarded = False

    def write(self, data: bytes) -> int:
        if self._discarded:  # late bytes of a failed writer (a zip closed as it is freed)
            return len(data)
        assert self._file is not None, "partial already ended"
        try:
            return self._file.write(data)
        except OSError as exc:
            raise storage_error(exc, "write the artifact") from exc

    def publish(self) -> None:
        assert self._file is not None, "partial already ended"
        try:
            self._publish(self._file)
        except OSError as exc:
            raise storage_error(exc, "publish the artifact") from exc

    def _publish(self, file: BinaryIO) -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        self._file = None
        # Made again if a discarded sibling partial removed them meanwhile (one stat).
        self._created += _make_dirs(self._final.parent, self._storage.root)
        os.replace(self._path, self._final)
        # The rename and any new directories are durable only once their parents are
        # synced: without it a crash could lose a file the job store calls complete.
        for directory in (self._final.parent, *(d.parent for d in self._created)):
            _fsync_dir(directory)

    def discard(self) -> None:
        self._discarded = True
        if self._file is not None:
            # Closing flushes, and a full disk fails the flush; the descriptor is closed
            # all the same, and the file must go whatever happened.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self._path.unlink(missing_ok=True)
        for directory in self._created:  # deepest first; one still in use stays
            try:
                directory.rmdir()
            except OSError:
                break


def _make_dirs(path: Path, root: Path) -> list[Path]:
    """Create `path` and its missing parents below `root`; the directories created,
    deepest first."""
    missing = []
    while path != root and not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
    return missing


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(ArtifactStorage):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        (self.root / PARTIAL_DIR).mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        """The file for `key`; keys that would leave the root (`..`, absolute paths) or
        reach into the partials are refused. Pure string work: no syscalls."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StorageError(f"invalid artifact key {key!r}")
        if parts[0] == PARTIAL_DIR or "\x00" in key:
            raise StorageError(f"invalid artifact key {key!r}")
        return self.root.joinpath(*parts)

    def open_partial(self, key: str, *, tag: str) -> LocalPartial:
        if not tag or "." in tag or "/" in tag:
            raise StorageError(f"invalid partial tag {tag!r}")
        name = f"{tag}.{new_id()}.part"
        try:
            return LocalPartial(self, key, self.root / PARTIAL_DIR / name)
        except OSError as exc:
            raise storage_error(exc, "write the artifact") from exc

    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        try:
            handle = open(self.path_of(key), "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError as exc:
            raise ArtifactNotFound(key) from exc
        handle.seek(offset)
        return handle

    def size(self, key: str) -> int:
        try:
            return self.path_of(key).stat().st_size
        except FileNotFoundError as exc:
            raise ArtifactNotFound(key) from exc

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        self._prune_dirs(path.parent)

    def _prune_dirs(self, directory: Path) -> None:
        """Remove `directory` and its parents below the root while they are empty."""
        for parent in (directory, *directory.parents):
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def delete_prefix(self, prefix: str) -> int:
        top = self.path_of(prefix.rstrip("/"))
        removed = 0
        for dirpath, _, filenames in os.walk(top, topdown=False):
            for filename in filenames:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, filename))
                    removed += 1
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        self._prune_dirs(top.parent)
        return removed

    def discard_partials(self, tag: str) -> int:
        found = list((self.root / PARTIAL_DIR).glob(f"{tag}.*.part"))
        for path in found:
            path.unlink(missing_ok=True)
        return len(found)

    def partials(self) -> Iterator[PartialFile]:
        with os.scandir(self.root / PARTIAL_DIR) as entries:
            for entry in entries:
                if not entry.name.endswith(".part"):
                    continue
                try:
                    modified = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                tag = entry.name.split(".", 1)[0]
                yield PartialFile(tag, _moment(modified), entry.name)

    def discard_partial(self, partial: PartialFile) -> None:
        if "/" in partial.handle or not partial.handle.endswith(".part"):
            raise StorageError(f"not a partial: {partial.handle!r}")
        (self.root / PARTIAL_DIR / partial.handle).unlink(missing_ok=True)

    def files(self, prefix: str = "") -> Iterator[StoredFile]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            if dirpath == str(self.root):
                dirnames[:] = [d for d in dirnames if d != PARTIAL_DIR]
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                key = os.path.relpath(path, self.root).replace(os.sep, "/")
                if not key.startswith(prefix):
                    continue
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                yield StoredFile(key, stat.st_size, _moment(stat.st_mtime))


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
