"""The chaos harness on real parts: its read-back accepts what exportd writes and refuses
a damaged file, and a tiny round runs end to end. Whether exportd keeps the invariants
under faults is judged by `make chaos` / `make chaos-small`, not here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chaos.artifacts import check_files
from chaos.history import ArtifactRow, JobRow
from chaos.run import Round, Size

from exportd.formats import Output, plan_output
from exportd.jobs import utcnow
from exportd.storage import LocalStorage
from support.exporters import slow_batch

CASES = {
    "single": ("csv", "gzip", {}),
    "parts": ("xlsx", "none", {"max_rows_per_file": 25}),
    "bundle": ("csv", "zstd", {"formats": ["parquet", "ndjson", "tsv"]}),
}


def written(tmp_path: Path, fmt: str, compression: str, options: dict[str, Any]) -> tuple:
    """A `chaos` job of 60 rows (n = 0…59) written by exportd's own `Output`."""
    storage = LocalStorage(tmp_path)
    plan = plan_output(
        job_id="job1", format=fmt, compression=compression, options=options,
        filename=None, allowed=("csv", "tsv", "ndjson", "json", "parquet", "xlsx"),
    )  # fmt: skip
    output = Output(plan, storage, key_prefix="jobs/job1/1", tag="job1-1")
    for index in range(3):
        output.write(slow_batch(index, 20))
    files = output.publish(utcnow())
    rows = [
        ArtifactRow(
            "job1",
            f.entry.name,
            f.key,
            f.entry.size,
            f.entry.sha256,
            f.entry.rows,
            f.entry.content_type,
        )
        for f in files
    ]
    job = JobRow(
        "job1", "o", "chaos", "completed", 1, 3, None, None,
        {"batches": 3, "rows_per_batch": 20, "delay": 0}, fmt, compression, options, None,
    )  # fmt: skip
    return job, rows


@pytest.mark.parametrize("case", list(CASES))
def test_read_back_accepts_what_exportd_writes(tmp_path: Path, case: str) -> None:
    """A single file, numbered parts with a manifest, a bundle: all read back clean."""
    job, rows = written(tmp_path, *CASES[case])
    assert check_files(job, rows, tmp_path).problems == []


@pytest.mark.parametrize("case", list(CASES))
def test_read_back_refuses_a_damaged_or_missing_file(tmp_path: Path, case: str) -> None:
    """One flipped byte, or a file gone, is a corrupt artifact."""
    job, rows = written(tmp_path, *CASES[case])
    path = tmp_path / rows[0].storage_key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert any("sha256" in p for p in check_files(job, rows, tmp_path).problems)
    path.unlink()
    assert any("cannot read" in p for p in check_files(job, rows, tmp_path).problems)


@pytest.mark.slow
def test_a_tiny_round_runs_end_to_end() -> None:
    """A round on the SQLite shape with one SIGKILL: jobs created over HTTP, the fault
    recorded with its target, every figure computed, no harness error."""
    size = Size(12, 2, 1, 2, {"sigkill": 1}, rate=20, volume_mb=32, drain_timeout=60)
    result = Round("sqlite", "test", size, seed=3, keep=False, save_logs=False).run()
    counts = result["counts"]
    assert counts["jobs created"] == 12
    assert result["figures"]["harness errors"] == 0
    assert [f["kind"] for f in result["faults"]] == ["sigkill"]
    assert result["faults"][0]["skipped"] or result["faults"][0]["pid"]
    assert counts["worker processes started"] >= 1
    json.dumps(result, default=str)
