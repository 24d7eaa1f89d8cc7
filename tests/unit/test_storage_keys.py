"""Local storage: keys that would escape its root are refused; publishing is durable."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportd.errors import StorageError
from exportd.storage import LocalStorage, local


@pytest.mark.parametrize(
    "key", ["../x", "/etc/passwd", "a/../../b", ".partial/x", "", "a//b", "a/./b"]
)
def test_escaping_keys_are_refused(tmp_path: Path, key: str) -> None:
    """Traversal, absolute paths, empty segments and the partials folder are refused."""
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).path_of(key)


def test_plain_keys_map_under_the_root(tmp_path: Path) -> None:
    """A normal key maps to a path under the root."""
    assert LocalStorage(tmp_path).path_of("jobs/1/2/f.csv") == tmp_path / "jobs/1/2/f.csv"


def test_publishing_syncs_every_directory_whose_entries_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing into new directories syncs the file's directory and the parent of
    each directory it created, up to the root, so the rename survives a crash; a second
    file in the same directory syncs only that directory."""
    synced: list[Path] = []
    real = local._fsync_dir
    monkeypatch.setattr(local, "_fsync_dir", lambda path: (synced.append(path), real(path)))
    storage = LocalStorage(tmp_path)
    first = storage.open_partial("jobs/7/a.csv", tag="t")
    first.write(b"a,b\n")
    first.publish()
    assert synced == [tmp_path / "jobs/7", tmp_path / "jobs", tmp_path]
    assert (tmp_path / "jobs/7/a.csv").read_bytes() == b"a,b\n"
    synced.clear()
    second = storage.open_partial("jobs/7/b.csv", tag="t")
    second.publish()
    assert synced == [tmp_path / "jobs/7"]


def test_a_discarded_partial_leaves_no_directories_behind(tmp_path: Path) -> None:
    """Directories made for a partial that is discarded are removed again, unless
    another file is published into them; a sibling still publishes afterwards."""
    storage = LocalStorage(tmp_path)
    lone = storage.open_partial("jobs/8/1/a.csv", tag="t")
    assert (tmp_path / "jobs/8/1").is_dir()
    lone.discard()
    assert not (tmp_path / "jobs/8").exists()
    first = storage.open_partial("jobs/9/1/a.csv", tag="t")
    second = storage.open_partial("jobs/9/1/b.csv", tag="t")
    first.discard()
    second.write(b"b")
    second.publish()
    assert list(storage.keys("jobs/9")) == ["jobs/9/1/b.csv"]
