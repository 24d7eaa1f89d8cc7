"""The `chaos` exporter, loaded by every exportd process of a round with
`--app chaos.exporters`.

It yields deterministic rows in a few batches with a pause before each, so a fault lands
in the middle of an attempt, and appends to an execution log (the file named by
`CHAOS_EXEC_LOG`, one JSON line, written with one `O_APPEND` write) when an attempt starts
producing and when it has produced its last row. The log is what proves how many times
a job really ran, in which worker process, independently of what the job store says."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Annotated

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from exportd.exporters import ExportContext, exporter

EXEC_LOG_ENV = "CHAOS_EXEC_LOG"


class ChaosParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batches: Annotated[int, Field(ge=1, le=1000)] = 4
    rows_per_batch: Annotated[int, Field(ge=1, le=100_000)] = 100
    delay: Annotated[float, Field(ge=0, le=10)] = 0.1

    @property
    def rows(self) -> int:
        return self.batches * self.rows_per_batch


def chaos_batch(index: int, rows: int) -> pa.RecordBatch:
    """Rows `index * rows` … of the export: `n` counts 0, 1, … across the whole export
    (the check reads it back in order); `text` holds the characters CSV must quote."""
    first = index * rows
    numbers = range(first, first + rows)
    return pa.RecordBatch.from_pydict(
        {
            "n": pa.array(numbers, pa.int64()),
            "batch": pa.array([index] * rows, pa.int32()),
            "text": pa.array([f'row {n}, "quoted"\nand\ttabbed' for n in numbers]),
            "half": pa.array([n / 2 for n in numbers], pa.float64()),
        }
    )


def record(event: str, ctx: ExportContext) -> None:
    """Append one execution-log line; a no-op when `CHAOS_EXEC_LOG` is not set (the API
    process validates params with this module but never runs it)."""
    path = os.environ.get(EXEC_LOG_ENV)
    if not path:
        return
    line = {
        "event": event,
        "job": ctx.job_id,
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "t": time.time(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, orjson.dumps(line) + b"\n")
    finally:
        os.close(fd)


@exporter("chaos", params=ChaosParams)
def chaos(params: ChaosParams, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """Deterministic rows in `batches` batches, `delay` seconds apart, with an execution log."""
    record("start", ctx)
    ctx.set_total(params.rows)
    for index in range(params.batches):
        time.sleep(params.delay)
        yield chaos_batch(index, params.rows_per_batch)
    record("finish", ctx)
