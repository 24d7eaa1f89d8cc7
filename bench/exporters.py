"""Exporters used only by the benchmarks (loaded with `--app bench.exporters`)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyarrow as pa
from pydantic import BaseModel

from exportd.exporters import ExportContext, NoParams, exporter


@exporter("noop", params=NoParams)
def noop(params: NoParams, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """Produces nothing: what is left is the queue's own cost per job."""
    return iter(())


class TickerParams(BaseModel):
    ticks: int = 200
    interval: float = 0.05


@exporter("ticker", params=TickerParams)
def ticker(params: TickerParams, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """One one-row batch every `interval` seconds, so progress is written steadily."""
    ctx.set_total(params.ticks)
    for index in range(params.ticks):
        time.sleep(params.interval)
        yield pa.RecordBatch.from_pydict({"tick": [index]})
