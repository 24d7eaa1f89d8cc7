"""Formula cells from SQL sources: PostgreSQL's COPY fast path escapes string cells and
header names exactly like the writer does on the other paths, leaves numbers alone,
and writes verbatim when the job turns the escaping off; through a worker too."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sql_sources import Ctx, mysql_source, pg_source, source_url, sources_json

from conftest import wait_for_status
from exportd.config import Settings
from exportd.exporters import Encoded
from exportd.exporters.sql import SqlParams, sql
from exportd.formats import HashingSink, Stream
from exportd.formats.text import CsvWriter
from exportd.jobs import NewJob, Status
from exportd.runtime import Runtime

__all__ = ["mysql_source", "pg_source", "source_url"]

VALUES = ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", 'a,"=b', "plain", None, ""]
RISKY_SQL = """SELECT id AS "=id", -id AS neg, -1.5::float8 AS f, -2.25::numeric AS d,
    date '2024-01-02' AS day, interval '-1 day' AS iv, s AS "@text", (-id)::text AS negtext
FROM (VALUES {rows}) AS v(id, s) ORDER BY id""".format(
    rows=", ".join(
        f"({i}, {'NULL' if v is None else 'E' + repr(v)})" for i, v in enumerate(VALUES, 1)
    )
)
ESCAPED = ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", 'a,"=b', "plain", "", ""]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is always SQLite; the *sources* vary."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def settings(url: str) -> Settings:
    return Settings(sources=json.dumps({"shop": {"url": url, "count": "none"}}))


def copied(url: str, *, escape: bool = True) -> bytes:
    """The COPY path's CSV for RISKY_SQL (every item must be encoded bytes)."""
    ctx = Ctx(settings(url), encoded="csv", csv_formula_escape=escape)
    items = list(sql(SqlParams(source="shop", sql=RISKY_SQL), ctx))
    assert all(isinstance(item, Encoded) for item in items)
    return b"".join(item.data for item in items)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


@pytest.mark.postgres
def test_copy_escapes_string_cells_and_headers_but_not_numbers(pg_source: str) -> None:
    """Through COPY, string cells and header names starting with a formula character
    get a `'`; negative integers, floats, numerics and intervals do not, a negative
    number cast to text does."""
    header, *rows = read_csv(copied(pg_source))
    assert header == ["'=id", "neg", "f", "d", "day", "iv", "'@text", "negtext"]
    assert [row[6] for row in rows] == ESCAPED
    assert rows[0][1:6] == ["-1", "-1.5", "-2.25", "2024-01-02", "-1 days"]
    assert [row[7] for row in rows] == [f"'-{i}" for i in range(1, len(VALUES) + 1)]


@pytest.mark.postgres
def test_copy_escaping_holds_across_tiny_blocks(
    pg_source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut into blocks of a few rows each, the escaped COPY output is the same bytes."""
    whole = copied(pg_source)
    monkeypatch.setattr("exportd.exporters.sql_copy.COPY_BLOCK", 32)
    assert copied(pg_source) == whole


@pytest.mark.postgres
def test_copy_and_cursor_paths_escape_the_same_cells(
    pg_source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The string columns and header read back the same from COPY as from the cursor
    path written by the CSV writer."""
    fast = read_csv(copied(pg_source))
    monkeypatch.setattr("exportd.exporters.sql_arrow.usable", lambda url: False)
    batches = list(sql(SqlParams(source="shop", sql=RISKY_SQL), Ctx(settings(pg_source))))
    buffer = io.BytesIO()
    writer = CsvWriter(Stream(HashingSink(buffer)))
    for batch in batches:
        writer.write(batch)
    writer.close()
    slow = read_csv(buffer.getvalue())
    assert [row[6:] for row in fast] == [row[6:] for row in slow]
    assert fast[0] == slow[0]


@pytest.mark.postgres
def test_copy_is_verbatim_when_the_job_turns_escaping_off(pg_source: str) -> None:
    """With `csv_formula_escape` off, COPY's cells and header are the values as stored."""
    header, *rows = read_csv(copied(pg_source, escape=False))
    assert header[0] == "=id"
    assert [row[6] for row in rows] == [v or "" for v in VALUES]


@pytest.mark.postgres
def test_duplicate_column_names_leave_the_copy_path(pg_source: str) -> None:
    """Two string columns of one name (which FORCE_QUOTE cannot tell apart) are read as
    record batches instead, which the CSV writer escapes."""
    statement = "SELECT s AS x, s AS x FROM (VALUES ('=1+1')) AS v(s)"
    ctx = Ctx(settings(pg_source), encoded="csv")
    items = list(sql(SqlParams(source="shop", sql=statement), ctx))
    assert items and all(isinstance(item, pa.RecordBatch) for item in items)


def run_job(runtime: Runtime, params: dict[str, Any], **kw: Any) -> Any:
    job = runtime.store.enqueue(NewJob(owner="alice", exporter="sql", params=params, **kw))
    runtime.start_worker(concurrency=1)
    return wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)


def artifact_rows(runtime: Runtime, job: Any) -> list[list[str]]:
    (artifact,) = job.artifacts
    with runtime.storage.open_read(artifact.storage_key) as handle:
        return read_csv(handle.read())


@pytest.mark.parametrize("escape", [True, False])
def test_a_worker_job_honours_the_option_on_every_source(
    make_runtime: Callable[..., Runtime], source_url: str, escape: bool
) -> None:
    """A CSV job escapes the formula column by default and writes it verbatim with
    `options.csv_formula_escape: false`; negative ids are numbers either way."""
    runtime = make_runtime(sources=sources_json(source_url))
    statement = "SELECT -id AS neg, '=1+1' AS f FROM orders ORDER BY id"
    done = run_job(
        runtime,
        {"source": "shop", "sql": statement},
        options={"csv_formula_escape": escape},
    )
    assert done.status == Status.COMPLETED, done.error
    header, *rows = artifact_rows(runtime, done)
    assert header == ["neg", "f"]
    assert len(rows) == 60
    assert {row[1] for row in rows} == {"'=1+1" if escape else "=1+1"}
    assert all(row[0] == "0" or row[0].startswith("-") for row in rows)
