"""Exporters used by the tests; worker subprocesses load them with `--app support.exporters`."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator

import pyarrow as pa
from pydantic import BaseModel

from exportd.errors import PermanentError, RetryableError
from exportd.exporters import ExportContext, exporter


def log_line(path: str, line: str) -> None:
    """Append one line atomically (O_APPEND), safe across processes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class CountParams(BaseModel):
    log: str
    seconds: float = 0.0


@exporter("count", params=CountParams)
def count(params: CountParams, ctx: ExportContext) -> Iterator[list[dict[str, object]]]:
    """Records each execution as `job attempt owner start end` in the log file."""
    start = time.time()
    if params.seconds:
        time.sleep(params.seconds)
    log_line(params.log, f"{ctx.job_id} {ctx.attempt} {ctx.owner} {start} {time.time()}")
    yield [{"job": ctx.job_id, "attempt": ctx.attempt}]


class SlowParams(BaseModel):
    batches: int = 50
    rows_per_batch: int = 1000
    delay: float = 0.1


def slow_batch(index: int, rows: int) -> pa.RecordBatch:
    first = index * rows
    return pa.RecordBatch.from_pydict(
        {
            "n": pa.array(range(first, first + rows), pa.int64()),
            "label": pa.array([f"row {i}" for i in range(first, first + rows)]),
        }
    )


@exporter("slow", params=SlowParams)
def slow(params: SlowParams, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """Deterministic rows, one batch every `delay` seconds."""
    ctx.set_total(params.batches * params.rows_per_batch)
    for index in range(params.batches):
        ctx.step(f"batch {index + 1} of {params.batches}")
        time.sleep(params.delay)
        yield slow_batch(index, params.rows_per_batch)


class FlakyParams(BaseModel):
    fail_times: int = 1
    permanent: bool = False
    code: str = "upstream_unavailable"


@exporter("flaky", params=FlakyParams)
def flaky(params: FlakyParams, ctx: ExportContext) -> Iterator[list[dict[str, object]]]:
    """Fails its first `fail_times` attempts (permanently if asked), then succeeds."""
    if params.permanent:
        raise PermanentError("the source said no", code=params.code)
    if ctx.attempt <= params.fail_times:
        raise RetryableError(f"attempt {ctx.attempt} failed", code=params.code)
    yield [{"ok": True, "attempt": ctx.attempt}]


class HandoffParams(BaseModel):
    batches: int = 4
    rows_per_batch: int = 100


@exporter("handoff", params=HandoffParams)
def handoff(params: HandoffParams, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """Fails if a batch it yielded is still referenced (by the runner, the output, a
    writer) when it starts making the next one."""
    previous: weakref.ref[pa.RecordBatch] | None = None
    for index in range(params.batches):
        if previous is not None and previous() is not None:
            raise PermanentError(f"batch {index - 1} is still alive", code="batch_kept")
        batch = slow_batch(index, params.rows_per_batch)
        previous = weakref.ref(batch)
        yield batch
        del batch
