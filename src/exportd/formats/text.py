"""Text formats: CSV and TSV (Arrow's C++ writer), NDJSON and JSON (orjson)."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from exportd.formats.base import TabularWriter
from exportd.formats.sink import Stream
from exportd.formats.values import json_default


class CsvWriter(TabularWriter):
    """RFC 4180 CSV with a header row, written by Arrow's C++ CSV writer: values holding
    the delimiter, a quote or a newline are quoted; null is an empty field; timestamps are
    ISO 8601 in UTC (`…Z`)."""

    delimiter = ","

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        super().__init__(stream, compression=compression)
        self._writer: pacsv.CSVWriter | None = None

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            options = pacsv.WriteOptions(include_header=True, delimiter=self.delimiter)
            self._writer = pacsv.CSVWriter(self.stream, batch.schema, write_options=options)
        self._writer.write_batch(batch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        super().close()


class TsvWriter(CsvWriter):
    """Tab-separated values, quoted like CSV where a value holds a tab, quote or newline."""

    delimiter = "\t"


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
