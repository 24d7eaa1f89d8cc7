"""Text formats: CSV and TSV (Arrow's C++ writer), NDJSON and JSON (orjson).

CSV and TSV are safe to open in a spreadsheet: a string cell or a header name whose
first character would make Excel, LibreOffice or Google Sheets run it as a formula
(`=`, `+`, `-`, `@`, tab, carriage return: OWASP's CSV injection list) gets a leading
`'`, which spreadsheets show as text and do not run (`=1+1` is written `'=1+1`).
Only string-typed values are changed: numbers (`-5` in an integer or float column),
dates, timestamps and booleans are written as they are. The job option
`csv_formula_escape: false` writes every value verbatim (`CsvWriter.escape_formulas`).
`neutralise_quoted_csv` and `escape_csv_header` do the same to CSV that is already
encoded (PostgreSQL's `COPY` path)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from exportd.formats.base import TabularWriter
from exportd.formats.sink import Stream
from exportd.formats.values import json_default

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet run a cell as a formula."""
_RISKY_BYTE = np.zeros(256, dtype=bool)
_RISKY_BYTE[[ord(char) for char in FORMULA_STARTS]] = True
_OFFSETS: dict[pa.DataType, type[np.integer[Any]]] = {pa.string(): np.int32, pa.binary(): np.int32}
_OFFSETS |= {pa.large_string(): np.int64, pa.large_binary(): np.int64}
_FORMULA_BYTES = tuple(char.encode() for char in FORMULA_STARTS)
_MAYBE_QUOTED_FORMULA = re.compile(rb'"[=+\-@\t\r]')


def escape_text(value: str) -> str:
    """`value` with a leading `'` when a spreadsheet would run it as a formula."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def escape_formulas(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with its string (and binary) values and its column names escaped as
    `escape_text` does; other columns are the same arrays."""
    arrays = [_escape_array(column) for column in batch.columns]
    names = [escape_text(name) for name in batch.schema.names]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _escape_array(array: pa.Array) -> pa.Array:
    if isinstance(array, pa.DictionaryArray):
        return pa.DictionaryArray.from_arrays(array.indices, _escape_array(array.dictionary))
    offsets = _OFFSETS.get(array.type)
    if offsets is None:
        if not pa.types.is_string_view(array.type):
            return array
        array = array.cast(pa.large_string())
        offsets = np.int64
    risky = _risky_starts(array, offsets)
    if risky is None:
        return array
    text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    quote, empty = (pa.scalar(v if text else v.encode(), array.type) for v in ("'", ""))
    prefixed = pc.binary_join_element_wise(quote, array, empty)
    return pc.if_else(pa.array(risky), prefixed, array)


def _risky_starts(
    array: pa.Array, offset_type: type[np.integer[Any]]
) -> npt.NDArray[np.bool_] | None:
    """Which values start with a formula character (None when none does), read from the
    Arrow buffers directly: one gather over the first bytes, no per-value Python."""
    _, offsets_buffer, data_buffer = array.buffers()
    if data_buffer is None or data_buffer.size == 0 or len(array) == 0:
        return None
    width = np.dtype(offset_type).itemsize
    offsets = np.frombuffer(
        offsets_buffer, offset_type, count=len(array) + 1, offset=array.offset * width
    )
    data = np.frombuffer(data_buffer, np.uint8)
    starts = offsets[:-1]
    first = data.take(np.minimum(starts, data.size - 1))
    risky = _RISKY_BYTE.take(first) & (offsets[1:] > starts)
    return risky if risky.any() else None


def neutralise_quoted_csv(data: bytes) -> bytes:
    """Escape formula cells in CSV bytes where every string value is quoted and no
    other value is quoted *and* starts with a formula character (Arrow's writer;
    PostgreSQL's `COPY … CSV` with `FORCE_QUOTE` on the string columns), rows end with
    `\\n` and `data` starts at a row: `,"=1"` becomes `,"'=1"`.

    Exact, not a guess: a `"` followed by a formula character and preceded by a
    delimiter, a newline or nothing can only open a field (a closing quote is followed
    by `,` or `\\n`; a quote inside a quoted field is doubled). Bytes without any `"`
    followed by a formula character are returned as they are after one C-speed scan;
    otherwise each such pair present costs two `bytes.replace` (the inserted `'` cannot
    form a new match)."""
    if _MAYBE_QUOTED_FORMULA.search(data) is None:
        return data
    for char in _FORMULA_BYTES:
        if b'"' + char in data:
            for lead in (b",", b"\n"):
                data = data.replace(lead + b'"' + char, lead + b"\"'" + char)
    if data.startswith(b'"') and data[1:2] in _FORMULA_BYTES:
        data = b"\"'" + data[1:]
    return data


def escape_csv_header(line: bytes, encoding: str = "utf-8") -> bytes:
    """A CSV header row (one line, `\\n`-terminated) with its names escaped as
    `escape_text` does; the bytes as they are when no name needs it."""
    (names,) = list(csv.reader(io.StringIO(line.decode(encoding), newline="")))
    escaped = [escape_text(name) for name in names]
    if escaped == names:
        return line
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(escaped)
    return out.getvalue().encode(encoding)


class CsvWriter(TabularWriter):
    """RFC 4180 CSV with a header row, written by Arrow's C++ CSV writer: values holding
    the delimiter, a quote or a newline are quoted; null is an empty field; timestamps are
    ISO 8601 in UTC (`…Z`). String values and header names that a spreadsheet would run
    as a formula get a leading `'` (see the module doc) unless `escape_formulas` is off."""

    delimiter = ","
    escape_formulas = True

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        super().__init__(stream, compression=compression)
        self._writer: pacsv.CSVWriter | None = None

    def _write(self, batch: pa.RecordBatch) -> None:
        if self.escape_formulas:
            batch = escape_formulas(batch)
        if self._writer is None:
            options = pacsv.WriteOptions(include_header=True, delimiter=self.delimiter)
            self._writer = pacsv.CSVWriter(self.stream, batch.schema, write_options=options)
        self._writer.write_batch(batch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        super().close()


class TsvWriter(CsvWriter):
    """Tab-separated values, quoted like CSV where a value holds a tab, quote or newline;
    formula cells escaped as in CSV."""

    delimiter = "\t"


class VerbatimCsvWriter(CsvWriter):
    """CSV with every value as it is (the job option `csv_formula_escape: false`)."""

    escape_formulas = False


class VerbatimTsvWriter(TsvWriter):
    """TSV with every value as it is (the job option `csv_formula_escape: false`)."""

    escape_formulas = False


VERBATIM: dict[type[TabularWriter], type[TabularWriter]] = {
    CsvWriter: VerbatimCsvWriter,
    TsvWriter: VerbatimTsvWriter,
}
"""The writer that leaves formula cells as they are, for each escaping writer."""


class NdjsonWriter(TabularWriter):
    """One JSON object per line. Integers keep every digit; decimals are strings so no
    digit is lost; timestamps are ISO 8601 with their offset."""

    def _write(self, batch: pa.RecordBatch) -> None:
        dumps = orjson.dumps
        for part in self.row_slices(batch):
            lines = [dumps(row, default=json_default) for row in part.to_pylist()]
            self.stream.write(b"\n".join(lines) + b"\n")


class JsonWriter(TabularWriter):
    """One JSON array of objects, streamed: `[`, the rows separated by `,\\n`, `]`.
    Values are spelled as in NDJSON."""

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        super().__init__(stream, compression=compression)
        self._started = False

    def _write(self, batch: pa.RecordBatch) -> None:
        dumps = orjson.dumps
        for part in self.row_slices(batch):
            rows = [dumps(row, default=json_default) for row in part.to_pylist()]
            lead = b",\n" if self._started else b"[\n"
            self._started = True
            self.stream.write(lead + b",\n".join(rows))

    def close(self) -> None:
        self.stream.write(b"\n]\n" if self._started else b"[]\n")
        super().close()
