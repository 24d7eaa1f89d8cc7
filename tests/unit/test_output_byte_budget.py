"""The output-bytes cap: every byte an export writes counts, and past the cap the export
fails permanently with `too_large` and leaves no file and no partial behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from exportd.errors import PermanentError
from exportd.formats import HashingSink, Output, plan_output
from exportd.formats.sink import ByteBudget
from exportd.storage import LocalStorage

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def rows(start: int, count: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"n": pa.array(range(start, start + count), pa.int64())})


def export(storage: LocalStorage, max_bytes: int, **kw: Any) -> None:
    options = kw.pop("options", {})
    plan = plan_output(
        job_id="j",
        format=kw.pop("fmt", "csv"),
        compression=kw.pop("compression", "none"),
        options=options,
        filename=None,
        allowed=["csv", "ndjson", "parquet"],
    )
    output = Output(plan, storage, key_prefix="jobs/j/1", tag="claimj", max_bytes=max_bytes)
    try:
        for start in range(0, 20_000, 1000):
            output.write(rows(start, 1000))
    except BaseException:
        output.discard()
        raise
    output.publish(NOW)


def left_behind(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"compression": "gzip"},
        {"options": {"max_rows_per_file": 3000}},
        {"options": {"formats": ["csv", "ndjson"]}},
        {"fmt": "parquet"},
    ],
    ids=["plain", "gzip", "parts", "bundle", "parquet"],
)
def test_an_export_over_the_cap_fails_too_large_and_leaves_nothing(
    tmp_path: Path, kw: dict[str, Any]
) -> None:
    """Plain, compressed, split, bundled or buffered (parquet): over the cap it is a
    permanent `too_large`, and the storage holds nothing afterwards."""
    storage = LocalStorage(tmp_path)
    with pytest.raises(PermanentError) as raised:
        export(storage, 2_000, **kw)
    assert raised.value.code == "too_large" and not raised.value.retryable
    assert left_behind(tmp_path) == []


def test_an_export_within_the_cap_is_published(tmp_path: Path) -> None:
    """Under the cap nothing changes: the file is published whole."""
    storage = LocalStorage(tmp_path)
    export(storage, 10**9)
    (published,) = list(storage.keys())
    assert storage.size(published) > 100_000


def test_the_budget_is_shared_and_refuses_before_writing() -> None:
    """Two sinks share one budget, the write that would pass it never reaches the target,
    and writes after the refusal (a writer cleaning up) are dropped without raising."""
    budget = ByteBudget(10)
    first, second = bytearray(), bytearray()
    HashingSink(_Into(first), budget).write(b"123456")
    sink = HashingSink(_Into(second), budget)
    sink.write(b"1234")
    with pytest.raises(PermanentError, match="10 bytes"):
        sink.write(b"5")
    sink.write(b"end record")
    assert (bytes(first), bytes(second), budget.used) == (b"123456", b"1234", 11)


class _Into:
    def __init__(self, into: bytearray) -> None:
        self.into = into

    def write(self, data: bytes) -> int:
        self.into += data
        return len(data)
