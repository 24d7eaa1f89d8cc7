"""Excel workbooks through xlsxwriter in `constant_memory` mode (rows are flushed to a
temporary file as they are written, so memory does not grow with the row count).

A sheet holds at most 1,048,576 rows including the header. A larger export is refused
with `PermanentError(code="too_many_rows")` rather than split across sheets: set
`options.max_rows_per_file` (≤ 1,048,575) to get several workbooks instead.

Excel numbers are doubles: integers beyond ±2^53 and decimals with more than 15
significant digits are written as text so no digit is lost. Excel has no time zones:
timestamps are written in UTC (the header says so) and dates as dates."""

from __future__ import annotations

import datetime as dt
import decimal
import tempfile
from typing import Any

import pyarrow as pa

from exportd.errors import PermanentError
from exportd.formats.base import TabularWriter
from exportd.formats.sink import Stream
from exportd.formats.values import to_text

SHEET_ROWS = 1_048_576
EXACT_INT = 2**53
EPOCH = dt.datetime(2000, 1, 1)


class XlsxWriter(TabularWriter):
    max_rows = SHEET_ROWS - 1

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        # Imported here, when an xlsx file is written: a worker that never writes one
        # does not hold xlsxwriter (~3 MB).
        import xlsxwriter  # type: ignore[import-untyped]

        super().__init__(stream, compression=compression)
        scratch = stream.scratch() if stream.scratch is not None else None
        self._tmp = tempfile.TemporaryDirectory(prefix="exportd-xlsx-", dir=scratch)
        self._book = xlsxwriter.Workbook(
            stream,
            {"constant_memory": True, "tmpdir": self._tmp.name, "strings_to_numbers": False},
        )
        self._book.set_properties({"created": EPOCH})
        self._sheet = self._book.add_worksheet("export")
        self._date = self._book.add_format({"num_format": "yyyy-mm-dd"})
        self._stamp = self._book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss.000"})
        self._row = 0

    def _header(self, schema: pa.Schema) -> None:
        for col, field in enumerate(schema):
            utc = pa.types.is_timestamp(field.type) and field.type.tz is not None
            self._sheet.write_string(0, col, f"{field.name} (UTC)" if utc else field.name)
        self._row = 1

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._row == 0:
            self._header(batch.schema)
        if self.rows + batch.num_rows > self.max_rows:
            raise PermanentError(
                f"an xlsx sheet holds at most {self.max_rows:,} rows; set "
                "options.max_rows_per_file to split the export into several workbooks",
                code="too_many_rows",
            )
        for part in self.row_slices(batch):
            columns = [column.to_pylist() for column in part.columns]
            for values in zip(*columns, strict=True):
                for col, value in enumerate(values):
                    self._cell(self._row, col, value)
                self._row += 1

    def _cell(self, row: int, col: int, value: Any) -> None:
        sheet = self._sheet
        if value is None:
            return
        if isinstance(value, bool):
            sheet.write_boolean(row, col, value)
        elif isinstance(value, float) or (
            isinstance(value, int) and -EXACT_INT <= value <= EXACT_INT
        ):
            sheet.write_number(row, col, value)
        elif isinstance(value, decimal.Decimal) and len(value.as_tuple().digits) <= 15:
            sheet.write_number(row, col, float(value))
        elif isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            sheet.write_datetime(row, col, value, self._stamp)
        elif isinstance(value, dt.date):
            sheet.write_datetime(row, col, value, self._date)
        else:
            sheet.write_string(row, col, to_text(value))

    def close(self) -> None:
        if self._row == 0 and self.schema is not None:
            self._header(self.schema)
        try:
            self._book.close()
        finally:
            self._tmp.cleanup()
        super().close()
