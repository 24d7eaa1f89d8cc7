"""Reading a completed job's files back, with readers independent of exportd's writers.

For each artifact row: the file exists under its key, its size and sha256 are the row's,
and it parses (csv, tsv, ndjson, json, parquet, xlsx; gzip and zstd undone by the name's
suffix) with the row's row count. For the job: a manifest (beside numbered parts, or in
a zip bundle) lists exactly the files there are, with their sizes, checksums and rows;
each format the job asked for holds the expected rows in total (`params.rows` for
`synthetic`); no part holds more than `max_rows_per_file`; and for the `chaos` exporter
the `n` column reads 0, 1, 2, … in order across the parts."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import zstandard

from chaos.history import ArtifactRow, JobRow
from chaos.workload import expected_rows

MANIFEST = "manifest.json"
EXTENSIONS = {"csv": "csv", "tsv": "tsv", "ndjson": "ndjson", "json": "json",
              "parquet": "parquet", "xlsx": "xlsx"}  # fmt: skip


@dataclass
class Parsed:
    format: str
    rows: int
    n: list[int] | None
    """The `n` column, when the file has one."""


def _decompress(name: str, data: bytes) -> tuple[str, bytes]:
    if name.endswith(".gz"):
        return name[:-3], gzip.decompress(data)
    if name.endswith(".zst"):
        return name[:-4], zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return name, data


def _delimited(text: str, delimiter: str) -> tuple[int, list[Any] | None]:
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header, body = records[0], records[1:]
    column = header.index("n") if "n" in header else None
    return len(body), None if column is None else [int(r[column]) for r in body]


def _objects(rows: list[dict[str, Any]]) -> tuple[int, list[Any] | None]:
    has_n = bool(rows) and "n" in rows[0]
    return len(rows), [int(r["n"]) for r in rows] if has_n else None


def _xlsx(data: bytes) -> tuple[int, list[Any] | None]:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        values = list(book.worksheets[0].iter_rows(values_only=True))
    finally:
        book.close()
    header, body = values[0], values[1:]
    column = header.index("n") if "n" in header else None
    return len(body), None if column is None else [int(r[column]) for r in body]


def parse(name: str, data: bytes) -> Parsed:
    """Parse one exported file by its name; raises on anything unreadable."""
    inner, raw = _decompress(name, data)
    fmt = EXTENSIONS[inner.rsplit(".", 1)[-1]]
    if fmt in ("csv", "tsv"):
        rows, n = _delimited(raw.decode("utf-8"), "," if fmt == "csv" else "\t")
    elif fmt == "ndjson":
        rows, n = _objects([orjson.loads(line) for line in raw.splitlines() if line.strip()])
    elif fmt == "json":
        rows, n = _objects(orjson.loads(raw))
    elif fmt == "parquet":
        table = pq.read_table(io.BytesIO(raw))
        has_n = "n" in table.column_names
        rows, n = table.num_rows, table.column("n").to_pylist() if has_n else None
    else:
        rows, n = _xlsx(raw)
    return Parsed(fmt, rows, n)


@dataclass
class FileCheck:
    """What one job's files read back as, and what was wrong with them."""

    problems: list[str] = field(default_factory=list)
    parts: list[tuple[str, Parsed]] = field(default_factory=list)


def _manifest_problems(manifest: bytes, actual: dict[str, tuple[int, str, int]]) -> list[str]:
    """`actual`: name → (size, sha256, rows) of the files the manifest should list."""
    try:
        entries = orjson.loads(manifest)["files"]
        listed = {e["name"]: (e["size"], e["sha256"], e["rows"]) for e in entries}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return [f"manifest.json unreadable ({type(exc).__name__}: {exc})"]
    if listed == actual:
        return []
    return [f"manifest lists {sorted(listed.items())}, files are {sorted(actual.items())}"]


def _read_row(root: Path, row: ArtifactRow, result: FileCheck) -> bytes | None:
    path = root / row.storage_key
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.problems.append(f"{row.name}: cannot read {row.storage_key}: {exc}")
        return None
    if len(data) != row.size:
        result.problems.append(f"{row.name}: {len(data)} bytes, the row says {row.size}")
    if hashlib.sha256(data).hexdigest() != row.sha256:
        result.problems.append(f"{row.name}: sha256 differs from the row's")
    return data


def _parse_into(name: str, data: bytes, rows: int | None, result: FileCheck) -> None:
    try:
        parsed = parse(name, data)
    except Exception as exc:  # any failure to read a file back is a corrupt file
        result.problems.append(f"{name}: unreadable ({type(exc).__name__}: {exc})")
        return
    if rows is not None and parsed.rows != rows:
        result.problems.append(f"{name}: {parsed.rows} rows, its entry says {rows}")
    result.parts.append((name, parsed))


def _bundle(data: bytes, result: FileCheck) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        manifest = members.pop(MANIFEST)
        entries = {e["name"]: e for e in orjson.loads(manifest)["files"]}
    except Exception as exc:  # any failure to read a bundle back is a corrupt bundle
        result.problems.append(f"bundle unreadable ({type(exc).__name__}: {exc})")
        return
    actual = {}
    for name, content in members.items():
        rows = entries.get(name, {}).get("rows")
        actual[name] = (len(content), hashlib.sha256(content).hexdigest(), rows)
        _parse_into(name, content, rows, result)
    result.problems += _manifest_problems(manifest, actual)


def check_files(job: JobRow, rows: list[ArtifactRow], root: Path) -> FileCheck:
    """Everything wrong with a completed job's files (an empty list: all is well)."""
    result = FileCheck()
    if not rows:
        result.problems.append("completed without any artifact row")
        return result
    contents = {row.name: _read_row(root, row, result) for row in rows}
    if "formats" in job.options:
        if len(rows) != 1 or contents[rows[0].name] is None:
            result.problems.append(f"a bundle should be one zip, found {sorted(contents)}")
            return result
        _bundle(contents[rows[0].name] or b"", result)
    else:
        for row in rows:
            data = contents[row.name]
            if row.name != MANIFEST and data is not None:
                _parse_into(row.name, data, row.rows, result)
        manifest = contents.pop(MANIFEST, None)
        if "max_rows_per_file" in job.options and manifest is None:
            result.problems.append("numbered parts without manifest.json")
        elif manifest is not None:
            actual = {r.name: (r.size, r.sha256, r.rows) for r in rows if r.name != MANIFEST}
            result.problems += _manifest_problems(manifest, actual)
    _check_totals(job, result)
    return result


def _check_totals(job: JobRow, result: FileCheck) -> None:
    body = {"exporter": job.exporter, "params": job.params}
    expected = expected_rows(body)
    limit = job.options.get("max_rows_per_file")
    for fmt in job.options.get("formats") or [job.format]:
        parts = sorted((n, p) for n, p in result.parts if p.format == fmt)
        total = sum(p.rows for _, p in parts)
        if total != expected:
            result.problems.append(f"{fmt}: {total} rows in all, expected {expected}")
        if limit is not None and any(p.rows > limit for _, p in parts):
            result.problems.append(f"{fmt}: a part holds more than {limit} rows")
        if job.exporter == "chaos":
            numbers = [v for _, p in parts for v in (p.n or [])]
            if numbers != list(range(expected)):
                result.problems.append(f"{fmt}: column n is not 0..{expected - 1} in order")
