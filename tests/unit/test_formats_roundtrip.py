"""Every tabular format, read back by an independent reader, gives the source rows —
including values that break naive writers — and every compression decompresses with
the standard libraries."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import zoneinfo
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import brotli
import openpyxl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import zstandard

from exportd.errors import PermanentError
from exportd.formats import FORMATS, HashingSink, Stream
from exportd.formats.xlsx import XlsxWriter

BIG = 2**53 + 1
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NASTY_TEXT = [
    'quote " inside',
    "comma, and; semicolon",
    "new\nline",
    "tab\there",
    "pipe | and back\\slash",
    "<script>alert('x')</script> & ampersand",
    "ünïcödé 注文 ✓ 🎉",
    None,
]


def nasty_batch() -> pa.RecordBatch:
    """Eight rows of values that break naive writers."""
    n = len(NASTY_TEXT)
    stamps = [dt.datetime(2024, 3, 31, 1, 30, i, 123456, tzinfo=dt.UTC) for i in range(n)]
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array([BIG + i if i % 2 else -(BIG + i) for i in range(n)], pa.int64()),
            "amount": pa.array(
                [Decimal("12345678901234567.89"), Decimal("-0.01")] * (n // 2),
                pa.decimal128(20, 2),
            ),
            "day": pa.array([dt.date(1999, 12, 31) + dt.timedelta(days=i) for i in range(n)]),
            "at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "ratio": pa.array([0.1, None, 1e300, -2.5, 0.0, 3.25, None, 7.0]),
            "flag": pa.array([True, False, None, True, False, True, False, None]),
            "text": pa.array(NASTY_TEXT, pa.string()),
        }
    )


def write(fmt: str, batches: list[pa.RecordBatch], compression: str = "none") -> bytes:
    buffer = io.BytesIO()
    spec = FORMATS[fmt]
    assert spec.writer is not None
    stream = Stream(HashingSink(buffer), "none" if spec.container else compression)
    writer = spec.writer(stream, compression=compression)
    try:
        for batch in batches:
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return buffer.getvalue()


def source_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pa.Table.from_batches([nasty_batch()]).to_pylist()
    return rows


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@pytest.mark.parametrize(("fmt", "delimiter"), [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_read_back_typed(fmt: str, delimiter: str) -> None:
    """CSV and TSV parse back with Arrow's reader to exactly the source rows and types."""
    batch = nasty_batch()
    data = write(fmt, [batch, batch.slice(0, 3)])
    table = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types=batch.schema, strings_can_be_null=True),
    )
    rows = table.to_pylist()
    expected = source_rows() + source_rows()[:3]
    for row in [*rows, *expected]:
        row["at"] = row["at"].astimezone(dt.UTC)
    assert rows == expected


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_json_formats_keep_big_integers_decimals_and_zones(fmt: str) -> None:
    """NDJSON and JSON read back with the json module: exact ints, decimal strings,
    ISO timestamps with offsets, nulls and unicode."""
    data = write(fmt, [nasty_batch(), nasty_batch().slice(0, 0), nasty_batch()])
    text = data.decode()
    rows = [json.loads(line) for line in text.splitlines()] if fmt == "ndjson" else json.loads(text)
    expected = source_rows() * 2
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got["id"] == want["id"]
        assert Decimal(got["amount"]) == want["amount"]
        assert dt.datetime.fromisoformat(got["at"]) == want["at"]
        assert got["day"] == want["day"].isoformat()
        assert (got["ratio"], got["flag"], got["text"]) == (
            want["ratio"],
            want["flag"],
            want["text"],
        )


def test_empty_json_is_an_empty_array() -> None:
    """A JSON export without rows is `[]`, still valid JSON."""
    assert json.loads(write("json", [])) == []


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd", "brotli"])
def test_parquet_keeps_every_type_and_maps_compression_to_the_codec(compression: str) -> None:
    """Parquet reads back with pyarrow to the same table, and the job's compression is the
    column codec (the file itself is never wrapped)."""
    batch = nasty_batch()
    data = write("parquet", [batch, batch], compression)
    assert data[:4] == b"PAR1"
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.equals(batch.schema, check_metadata=False)
    assert table.to_pylist() == source_rows() * 2
    codec = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).compression
    assert codec.lower() == {"none": "snappy"}.get(compression, compression)


def test_xlsx_reads_back_with_openpyxl() -> None:
    """xlsx cells read back with openpyxl: numbers, big ints and long decimals as exact
    text, dates, UTC timestamps, booleans, nulls and unicode."""
    workbook = openpyxl.load_workbook(io.BytesIO(write("xlsx", [nasty_batch()])), read_only=True)
    rows = list(workbook["export"].iter_rows(values_only=True))
    assert rows[0] == ("id", "amount", "day", "at (UTC)", "ratio", "flag", "text")
    for got, want in zip(rows[1:], source_rows(), strict=True):
        assert got[0] == str(want["id"])  # beyond 2^53: text, every digit kept
        assert got[1] == (str(want["amount"]) if want["amount"].adjusted() > 14 else -0.01)
        assert got[2] == dt.datetime.combine(want["day"], dt.time())
        assert got[3] == want["at"].replace(tzinfo=None).replace(microsecond=123000)
        assert (got[4], got[5], got[6]) == (want["ratio"], want["flag"], want["text"])


def test_xlsx_refuses_more_rows_than_a_sheet_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the sheet limit the writer fails with too_many_rows instead of truncating."""
    monkeypatch.setattr(XlsxWriter, "max_rows", 10)
    with pytest.raises(PermanentError) as caught:
        write("xlsx", [nasty_batch(), nasty_batch()])
    assert caught.value.code == "too_many_rows"


class TableParser(HTMLParser):
    """Collects the text of every cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_html_table_escapes_and_reads_back() -> None:
    """The HTML page parses to one header and the source rows as text; `<script>` in data
    stays text."""
    parser = TableParser()
    parser.feed(write("html", [nasty_batch()]).decode())
    assert parser.scripts == 0
    assert parser.rows[0] == nasty_batch().schema.names
    expected = [
        [
            value.isoformat() if isinstance(value, dt.datetime) else as_text(value)
            for value in row.values()
        ]
        for row in source_rows()
    ]
    assert parser.rows[1:] == expected


def split_markdown_row(line: str) -> list[str]:
    cells, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    unescape = {"&lt;": "<", "&gt;": ">", "<br>": "\n"}
    out = []
    for cell in cells:
        for entity, char in unescape.items():
            cell = cell.replace(entity, char)
        out.append(cell.replace("&amp;", "&"))
    return out


def test_markdown_table_escapes_pipes_and_newlines() -> None:
    """Each record is one Markdown table line; unescaping the cells gives the source."""
    lines = write("markdown", [nasty_batch()]).decode().splitlines()
    assert len(lines) == 2 + len(NASTY_TEXT)
    assert lines[1] == "| " + " | ".join(["---"] * 7) + " |"
    assert split_markdown_row(lines[0]) == nasty_batch().schema.names
    texts = [split_markdown_row(line)[6] for line in lines[2:]]
    assert texts == [as_text(text) for text in NASTY_TEXT]
    assert "<script>" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("compression", "decompress"),
    [
        ("gzip", gzip.decompress),
        ("zstd", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
        ("brotli", brotli.decompress),
    ],
)
def test_compressed_output_decompresses_and_is_deterministic(
    compression: str, decompress: Any
) -> None:
    """Each codec's output decompresses with its standard library to the plain bytes, and
    the same rows give the same compressed bytes."""
    batches = [nasty_batch()] * 50
    plain = write("csv", batches)
    packed = write("csv", batches, compression)
    assert decompress(packed) == plain
    assert write("csv", batches, compression) == packed
    assert len(packed) < len(plain)


def test_gzip_output_is_read_by_the_gzip_command() -> None:
    """The fast deflate (ISA-L) writes standard gzip: `gzip -d` and `gzip -t` take a
    file of many megabytes (many compressor outputs) and give back the plain bytes."""
    batches = [nasty_batch()] * 4000
    plain = write("csv", batches)
    packed = write("csv", batches, "gzip")
    assert len(plain) > 3_000_000
    tested = subprocess.run(["gzip", "-t"], input=packed, capture_output=True)
    assert tested.returncode == 0, tested.stderr
    unpacked = subprocess.run(["gzip", "-d", "-c"], input=packed, capture_output=True, check=True)
    assert unpacked.stdout == plain


def test_local_time_zones_are_written_in_utc() -> None:
    """A timestamp in another zone is the same instant after a round trip."""
    stamp = dt.datetime(2024, 7, 1, 12, 0, tzinfo=PARIS)
    batch = pa.RecordBatch.from_pydict({"at": pa.array([stamp], pa.timestamp("us", tz=PARIS.key))})
    (row,) = json.loads(write("json", [batch]))
    assert dt.datetime.fromisoformat(row["at"]) == stamp
    table = pq.read_table(io.BytesIO(write("parquet", [batch])))
    assert table.column("at").to_pylist() == [stamp]
