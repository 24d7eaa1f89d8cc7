"""Output planning and writing: parts, manifests, zip bundles, limits and atomicity."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from exportd.errors import PermanentError
from exportd.formats import Output, OutputFile, plan_output
from exportd.storage import LocalStorage

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def batch(start: int, rows: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "n": pa.array(range(start, start + rows), pa.int64()),
            "text": pa.array([f'row {i}, "quoted"\nline' for i in range(start, start + rows)]),
        }
    )


def run(
    storage: LocalStorage,
    *,
    fmt: str = "csv",
    compression: str = "none",
    rows: int = 1000,
    chunk: int = 100,
    max_parts: int = 1000,
    **options: Any,
) -> list[OutputFile]:
    plan = plan_output(
        job_id="job1",
        format=fmt,
        compression=compression,
        options=options,
        filename=None,
        allowed=["csv", "parquet", "ndjson", "xlsx"],
        max_parts=max_parts,
    )
    output = Output(plan, storage, key_prefix="jobs/job1/1", tag="claim1")
    try:
        for start in range(0, rows, chunk):
            output.write(batch(start, min(chunk, rows - start)))
    except BaseException:
        output.discard()
        raise
    return output.publish(NOW)


def read(storage: LocalStorage, file: OutputFile) -> bytes:
    with storage.open_read(file.key) as handle:
        return handle.read()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "artifacts")


def test_single_file_has_a_matching_checksum(storage: LocalStorage) -> None:
    """Without options one file is published; its recorded size and sha256 are the real ones."""
    (file,) = run(storage, compression="gzip")
    data = read(storage, file)
    assert file.entry.name == "export-job1.csv.gz"
    assert (file.entry.size, file.entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert pacsv.read_csv(io.BytesIO(gzip.decompress(data))).num_rows == file.entry.rows == 1000


def test_row_sharding_gives_numbered_parts_and_a_manifest(storage: LocalStorage) -> None:
    """max_rows_per_file splits into parts of exactly that many rows (the last holds the
    rest), each with its own header and checksum, listed in a manifest artifact."""
    files = run(storage, compression="gzip", rows=1000, chunk=150, max_rows_per_file=300)
    names = [f.entry.name for f in files]
    assert names == [
        "part-00000.csv.gz",
        "part-00001.csv.gz",
        "part-00002.csv.gz",
        "part-00003.csv.gz",
        "manifest.json",
    ]
    manifest = json.loads(read(storage, files[-1]))
    assert manifest["job_id"] == "job1"
    assert manifest["exported_at"] == NOW.isoformat()
    numbers: list[int] = []
    for part, listed in zip(files[:-1], manifest["files"], strict=True):
        data = read(storage, part)
        assert listed == {
            "name": part.entry.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": part.entry.rows,
            "content_type": "text/csv; charset=utf-8",
        }
        numbers += pacsv.read_csv(io.BytesIO(gzip.decompress(data))).column("n").to_pylist()
    assert [f.entry.rows for f in files[:-1]] == [300, 300, 300, 100]
    assert numbers == list(range(1000))


def test_byte_sharding_keeps_parts_near_the_limit(storage: LocalStorage) -> None:
    """max_bytes_per_file starts a new part once a part reaches the limit; all rows survive."""
    files = run(storage, fmt="parquet", rows=20_000, chunk=5000, max_bytes_per_file=50_000)
    parts = files[:-1]
    assert len(parts) > 2
    assert all(p.entry.size >= 50_000 for p in parts[:-1])
    tables = [pq.read_table(io.BytesIO(read(storage, p))) for p in parts]
    assert pa.concat_tables(tables).column("n").to_pylist() == list(range(20_000))


def test_too_many_parts_fails_and_leaves_nothing(storage: LocalStorage) -> None:
    """More parts than max_parts fail with too_many_parts; no file stays behind."""
    with pytest.raises(PermanentError) as caught:
        run(storage, rows=1000, max_rows_per_file=100, max_parts=5)
    assert caught.value.code == "too_many_parts"
    assert list(storage.keys()) == []
    assert list((storage.root / ".partial").iterdir()) == []


def test_a_known_total_is_refused_before_writing() -> None:
    """The plan refuses a known row count that needs too many parts."""
    plan = plan_output(
        job_id="j",
        format="csv",
        compression="none",
        options={"max_rows_per_file": 10},
        filename=None,
        allowed=["csv"],
        max_parts=3,
    )
    plan.check_total(30)
    with pytest.raises(PermanentError, match="more than 3 files"):
        plan.check_total(31)


def test_bundle_holds_every_format_and_a_true_manifest(storage: LocalStorage) -> None:
    """options.formats gives one zip artifact; each member's manifest entry matches the
    member's real size and sha256, and the members read back to the rows."""
    (bundle,) = run(storage, rows=500, formats=["csv", "parquet", "xlsx"])
    assert bundle.entry.name == "export-job1.zip"
    assert bundle.entry.content_type == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(read(storage, bundle)))
    assert archive.testzip() is None
    manifest = json.loads(archive.read("manifest.json"))
    names = [entry["name"] for entry in manifest["files"]]
    assert names == ["export-job1.csv", "export-job1.parquet", "export-job1.xlsx"]
    assert sorted(archive.namelist()) == sorted([*names, "manifest.json"])
    for entry in manifest["files"]:
        data = archive.read(entry["name"])
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert entry["rows"] == 500
    assert archive.getinfo("export-job1.csv").compress_type == zipfile.ZIP_DEFLATED
    assert archive.getinfo("export-job1.parquet").compress_type == zipfile.ZIP_STORED
    table = pq.read_table(io.BytesIO(archive.read("export-job1.parquet")))
    assert table.column("n").to_pylist() == list(range(500))


def test_bundle_of_parts(storage: LocalStorage) -> None:
    """Formats and a row limit together give one zip of numbered parts per format."""
    (bundle,) = run(
        storage, compression="gzip", rows=250, formats=["csv", "ndjson"], max_rows_per_file=100
    )
    archive = zipfile.ZipFile(io.BytesIO(read(storage, bundle)))
    manifest = json.loads(archive.read("manifest.json"))
    assert sorted(e["name"] for e in manifest["files"]) == sorted(
        f"part-0000{i}.{ext}.gz" for ext in ("csv", "ndjson") for i in range(3)
    )
    lines = gzip.decompress(archive.read("part-00002.ndjson.gz")).splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(200, 250))


def test_empty_export_still_writes_one_file(storage: LocalStorage) -> None:
    """Zero rows give one (empty) file rather than none, so the job still has an artifact."""
    (file,) = run(storage, rows=0)
    assert (file.entry.rows, read(storage, file)) == (0, b"")


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"formats": ["csv", "nope"]}, "invalid_format"),
        ({"formats": ["pdf"]}, "invalid_format"),
        ({"max_rows_per_file": 0}, "invalid_options"),
        ({"max_bytes_per_file": 10}, "invalid_options"),
        ({"unknown": 1}, "invalid_options"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], code: str) -> None:
    """Unknown formats and bad option values fail with a stable code."""
    with pytest.raises(PermanentError) as caught:
        plan_output(
            job_id="j",
            format="csv",
            compression="none",
            options=options,
            filename=None,
            allowed=["csv", "ndjson"],
        )
    assert caught.value.code == code


def test_unknown_compression_is_refused() -> None:
    """A compression that does not exist fails with invalid_compression."""
    with pytest.raises(PermanentError) as caught:
        plan_output(
            job_id="j",
            format="csv",
            compression="lzma",
            options={},
            filename=None,
            allowed=["csv"],
        )
    assert caught.value.code == "invalid_compression"


def test_a_known_total_beyond_a_sheet_is_refused_unless_split() -> None:
    """An xlsx export whose known total exceeds a sheet fails early with too_many_rows;
    with max_rows_per_file within the limit it is accepted."""
    kw: dict[str, Any] = dict(job_id="j", format="xlsx", compression="none", filename=None)
    plan = plan_output(options={}, allowed=["xlsx"], **kw)
    plan.check_total(1_048_575)
    with pytest.raises(PermanentError) as caught:
        plan.check_total(1_048_576)
    assert caught.value.code == "too_many_rows"
    split = plan_output(options={"max_rows_per_file": 1_000_000}, allowed=["xlsx"], **kw)
    split.check_total(5_000_000)


def test_named_files_of_one_export_become_bundle_members(storage: LocalStorage) -> None:
    """An exporter writing several files (named batches) gets one zip with a member per
    name and format, each with its own row count."""
    plan = plan_output(
        job_id="job1",
        format="csv",
        compression="none",
        options={},
        filename=None,
        allowed=["csv"],
        multi_file=True,
    )
    output = Output(plan, storage, key_prefix="jobs/job1/1", tag="claim1")
    output.write(batch(0, 10), "orders")
    output.write(batch(0, 3), "customers")
    output.write(batch(10, 5), "orders")
    (bundle,) = output.publish(NOW)
    archive = zipfile.ZipFile(io.BytesIO(read(storage, bundle)))
    manifest = json.loads(archive.read("manifest.json"))
    assert {(f["name"], f["rows"]) for f in manifest["files"]} == {
        ("orders.csv", 15),
        ("customers.csv", 3),
    }
    orders = pacsv.read_csv(io.BytesIO(archive.read("orders.csv")))
    assert orders.column("n").to_pylist() == list(range(15))
