"""Local storage refuses artifact keys that would escape its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportd.errors import StorageError
from exportd.storage import LocalStorage


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
