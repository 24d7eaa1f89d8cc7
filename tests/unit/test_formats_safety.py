"""Exports are safe to open: CSV/TSV formula cells are neutralised (and only string
cells), the per-job option turns it off, the byte-level escaper for encoded CSV agrees
with the writer exactly, and Markdown cells cannot inject links, images or HTML."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import cmarkgfm
import pyarrow as pa
import pytest

from exportd.errors import PermanentError
from exportd.formats import FORMATS, HashingSink, Stream, TabularWriter, plan_output
from exportd.formats.text import (
    FORMULA_STARTS,
    CsvWriter,
    VerbatimCsvWriter,
    escape_csv_header,
    neutralise_quoted_csv,
)

DELIMITERS = {"csv": ",", "tsv": "\t"}


def write_with(writer_type: type[TabularWriter], batches: list[pa.RecordBatch]) -> bytes:
    buffer = io.BytesIO()
    writer = writer_type(Stream(HashingSink(buffer)))
    for batch in batches:
        writer.write(batch)
    writer.close()
    return buffer.getvalue()


def write(fmt: str, batch: pa.RecordBatch) -> bytes:
    writer = FORMATS[fmt].writer
    assert writer is not None
    return write_with(writer, [batch])


def read_rows(data: bytes, fmt: str) -> list[list[str]]:
    """The file as the csv module reads it (an independent reader)."""
    reader = csv.reader(io.StringIO(data.decode(), newline=""), delimiter=DELIMITERS[fmt])
    return list(reader)


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
@pytest.mark.parametrize("prefix", FORMULA_STARTS)
def test_each_formula_prefix_is_escaped_in_cells_and_headers(fmt: str, prefix: str) -> None:
    """A cell or header name starting with a formula character reads back with a leading
    `'`; other cells, including ones holding the character later on, are unchanged."""
    batch = pa.RecordBatch.from_pydict(
        {
            f"{prefix}head": [f"{prefix}1+1", "plain", f"mid{prefix}dle", None],
            "name": [f'{prefix}cmd|" /C calc"!A0', "x", "y", "z"],
        }
    )
    header, *rows = read_rows(write(fmt, batch), fmt)
    assert header == [f"'{prefix}head", "name"]
    assert rows == [
        [f"'{prefix}1+1", f'\'{prefix}cmd|" /C calc"!A0'],
        ["plain", "x"],
        [f"mid{prefix}dle", "y"],
        ["", "z"],
    ]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_numbers_dates_and_booleans_are_never_escaped(fmt: str) -> None:
    """Negative integers, floats and decimals, dates, timestamps and booleans are written
    as they are; only the string column's `-5` gets the `'`."""
    batch = pa.RecordBatch.from_pydict(
        {
            "int": pa.array([-5], pa.int64()),
            "float": pa.array([-2.5]),
            "decimal": pa.array([Decimal("-0.01")], pa.decimal128(10, 2)),
            "day": pa.array([dt.date(2024, 1, 2)]),
            "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("s")),
            "flag": pa.array([False]),
            "text": pa.array(["-5"]),
        }
    )
    _, row = read_rows(write(fmt, batch), fmt)
    assert row == ["-5", "-2.5", "-0.01", "2024-01-02", "2024-01-02 03:04:05", "false", "'-5"]


def test_dictionary_large_and_binary_string_columns_are_escaped() -> None:
    """Dictionary-encoded, large and binary string columns are escaped like plain
    strings, a sliced array included."""
    batch = pa.RecordBatch.from_pydict(
        {
            "dict": pa.array(["=a", "b", "=a"]).dictionary_encode(),
            "large": pa.array(["x", "+y", None], pa.large_string()),
            "bytes": pa.array([b"@z", b"", None]),
            "sliced": pa.array(["skip", "-q", "r", "=s"]).slice(1, 3),
        }
    )
    _, *rows = read_rows(write("csv", batch), "csv")
    assert rows == [["'=a", "x", "'@z", "'-q"], ["b", "'+y", "", "r"], ["'=a", "", "", "'=s"]]


def plan_writer(**options: Any) -> type[TabularWriter]:
    plan = plan_output(
        job_id="j",
        format="csv",
        compression="none",
        options=options,
        filename=None,
        allowed=["csv"],
    )
    writer = plan.formats[0].writer
    assert writer is not None
    return writer


def test_the_job_option_turns_escaping_off() -> None:
    """`options.csv_formula_escape: false` plans the verbatim writer, which writes the
    formula as it is; the default plans the escaping one."""
    batch = pa.RecordBatch.from_pydict({"=h": ["=1+1"]})
    assert read_rows(write_with(plan_writer(csv_formula_escape=False), [batch]), "csv") == [
        ["=h"],
        ["=1+1"],
    ]
    assert read_rows(write_with(plan_writer(), [batch]), "csv") == [["'=h"], ["'=1+1"]]
    with pytest.raises(PermanentError) as caught:
        plan_writer(csv_formula_escape="sometimes")
    assert caught.value.code == "invalid_options"


TRICKY = [
    "=1+1",
    "+1",
    "-1",
    "@SUM(A1)",
    "\tx",
    "\r\nx",
    '"=quoted',
    'a,"=b',
    "a\n=b",
    'x"\n"=y',
    "=",
    "",
    "ok",
    "comma,=",
    '"',
    None,
]


def test_the_encoded_csv_escaper_agrees_with_the_writer_byte_for_byte() -> None:
    """`neutralise_quoted_csv` over verbatim Arrow CSV (strings quoted, numbers not)
    gives exactly the escaping writer's bytes, on values with quotes, delimiters and
    newlines around the formula characters, and leaves negative numbers alone."""
    n = len(TRICKY)
    batch = pa.RecordBatch.from_pydict(
        {
            "=text": TRICKY,
            "n": pa.array([-i for i in range(n)], pa.int64()),
            "more": list(reversed(TRICKY)),
        }
    )
    verbatim = write_with(VerbatimCsvWriter, [batch, batch])
    escaped = write_with(CsvWriter, [batch, batch])
    assert verbatim != escaped
    assert neutralise_quoted_csv(verbatim) == escaped
    assert neutralise_quoted_csv(escaped) == escaped


def test_a_plain_header_row_is_escaped_and_kept_as_it_is_otherwise() -> None:
    """A PostgreSQL-style header row has its formula names escaped (and quoted where the
    new name needs it); a header without one is returned byte for byte."""
    assert escape_csv_header(b'id,=total,"a,b",@x\n') == b"id,'=total,\"a,b\",'@x\n"
    assert escape_csv_header(b'id,"a,b"\n') == b'id,"a,b"\n'


class Cells(HTMLParser):
    """The text of every `<td>`, and whether any link or image was rendered."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[str] = []
        self.tags: set[str] = set()
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "td":
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


HOSTILE = [
    "[x](javascript:alert(1))",
    "![](http://evil/x.png)",
    "<img src=x onerror=alert(1)>",
    "<http://evil.example/>",
    "[ref]: http://evil",
    "a | b \\| c",
    "&lt;already&gt; &amp;",
    "!not an image",
]


def test_markdown_cells_render_as_their_text_on_github() -> None:
    """Rendered by GitHub's cmark-gfm (tables and autolinks on), each hostile cell is
    one table cell whose text is the value itself: no link, image or raw HTML."""
    batch = pa.RecordBatch.from_pydict({"value": HOSTILE})
    markdown = write("markdown", batch).decode()
    parser = Cells()
    parser.feed(cmarkgfm.github_flavored_markdown_to_html(markdown))
    assert parser.cells == HOSTILE
    assert parser.tags.isdisjoint({"a", "img", "script"})
    assert "<img" not in markdown and "&lt;img" in markdown  # an entity, not HTML
