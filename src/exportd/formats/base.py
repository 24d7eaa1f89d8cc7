"""The tabular writer contract and the description of a format."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from exportd.errors import PermanentError
from exportd.formats.sink import Stream

ROW_SLICE = 4096


class TabularWriter(ABC):
    """Writes Arrow record batches, one at a time, into a `Stream`.

    Contract: `write` may be called any number of times (also zero) and keeps no more
    than one batch (plus the format's own fixed buffers) in memory; `close` writes what
    the format needs at the end (a footer, a closing bracket) and closes the stream. Every
    batch after the first is cast to the first batch's schema, or refused. `compression`
    is the job's compression, used by formats that compress internally (`container`
    formats such as Parquet); the others receive an already compressing stream.
    """

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        self.stream = stream
        self.compression = compression
        self.rows = 0
        self.schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.schema is None:
            self.schema = batch.schema
        elif batch.schema != self.schema:
            batch = self._conform(batch, self.schema)
        self._write(batch)
        self.rows += batch.num_rows

    @staticmethod
    def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
        try:
            return batch.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise PermanentError(
                f"the rows changed shape during the export: {exc}", code="schema_changed"
            ) from exc

    @abstractmethod
    def _write(self, batch: pa.RecordBatch) -> None: ...

    @staticmethod
    def row_slices(batch: pa.RecordBatch, size: int = ROW_SLICE) -> Iterator[pa.RecordBatch]:
        """A batch in slices, for writers that turn rows into Python objects: bounds the
        objects alive at once, whatever size of batch an exporter yields."""
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)

    def close(self) -> None:
        self.stream.close()

    def abort(self) -> None:
        """Release what the writer holds after a failure; its output is thrown away."""
        with contextlib.suppress(Exception):
            self.close()


@dataclass(frozen=True)
class FormatSpec:
    """A format: its file extension and content type; `writer` writes rows (None for
    document-only formats); `document` says whether a rendered document can be written
    in it; a `container` format compresses internally and never gets an outer
    compression layer."""

    name: str
    extension: str
    content_type: str
    writer: type[TabularWriter] | None
    document: bool = False
    container: bool = False
    row_limit: int | None = None
    """The most data rows one file can hold, if the format has a limit."""
