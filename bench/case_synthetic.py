"""Case 8: how fast `synthetic` generates rows, alone and written to CSV and Parquet, so
generation is shown not to be the bottleneck of an export."""

from __future__ import annotations

import time

from bench.harness import Result
from exportd.exporters.synthetic import SyntheticParams, generate
from exportd.formats import FORMATS, HashingSink, Stream


class Null:
    def write(self, data: bytes) -> int:
        return len(data)


def rows_per_second(rows: int, fmt: str | None, compression: str = "none") -> float:
    params = SyntheticParams(rows=rows, seed=1)
    start = time.perf_counter()
    if fmt is None:
        for _ in generate(params):
            pass
    else:
        spec = FORMATS[fmt]
        assert spec.writer is not None
        stream = Stream(HashingSink(Null()), "none" if spec.container else compression)
        writer = spec.writer(stream, compression=compression)
        for batch in generate(params):
            writer.write(batch)
        writer.close()
    return rows / (time.perf_counter() - start)


def run(quick: bool, pg_url: str) -> list[Result]:
    rows = 200_000 if quick else 2_000_000
    alone = rows_per_second(rows, None)
    results = [Result("8 synthetic", "generation only", alone, unit="rows/s")]
    for fmt, compression in (("csv", "none"), ("csv", "gzip"), ("parquet", "zstd")):
        rate = rows_per_second(rows, fmt, compression)
        share = rate / alone
        results.append(
            Result(
                "8 synthetic",
                f"synthetic -> {fmt} ({compression})",
                rate,
                unit="rows/s",
                goal="generation not the bottleneck (< 50% of export time)",
                met=share < 0.5,
                notes=f"generation is {100 * share:.0f}% of the export's time",
            )
        )
    return results
