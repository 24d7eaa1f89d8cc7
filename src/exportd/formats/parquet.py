"""Parquet through `pyarrow.parquet.ParquetWriter`: one row group per batch, every Arrow
type kept as it is (64-bit integers, decimals, dates, timestamps with their zone).

Parquet compresses internally, so the job's compression picks the column codec and the
file stays `.parquet`: `none` → snappy (Parquet's own default, cheap to read),
`gzip` → gzip, `zstd` → zstd, `brotli` → brotli."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from exportd.formats.base import TabularWriter
from exportd.formats.sink import Stream

if TYPE_CHECKING:
    import pyarrow.parquet as pq

CODECS = {"none": "snappy", "gzip": "gzip", "zstd": "zstd", "brotli": "brotli"}


class ParquetWriter(TabularWriter):
    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        super().__init__(stream, compression=compression)
        self._writer: pq.ParquetWriter | None = None

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        # Imported here, when a Parquet file is written: a worker that never writes one
        # does not hold pyarrow.parquet (~9 MB).
        import pyarrow.parquet as pq

        return pq.ParquetWriter(
            self.stream,
            schema,
            compression=CODECS[self.compression],
            store_schema=True,
        )

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = self._open(batch.schema)
        if batch.num_rows:
            self._writer.write_batch(batch)

    def close(self) -> None:
        if self._writer is None:
            self._writer = self._open(self.schema or pa.schema([]))
        self._writer.close()
        super().close()
