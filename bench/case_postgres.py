"""Cases 1-4: PostgreSQL exports end to end (`POST /v1/exports` → completed, file on
storage) against the tools people use today, and the worker's peak memory.

1: → CSV vs `psql \\copy (…) to FILE csv header`, and vs the raw stream: psycopg's
   `COPY … TO STDOUT` written to a file with no other work
1 gzip: → CSV + gzip vs `psql \\copy (…) to stdout` piped into `gzip -6`, with the sizes
2: → Parquet (zstd) vs the best plain-Python pipeline (ADBC → `pyarrow.parquet`)
3: → CSV vs `pandas.read_sql(chunksize=…)` + `to_csv`
4: peak RSS of a worker process exporting 1M and 10M rows to CSV and Parquet"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.harness import (
    Result,
    Server,
    drop_database,
    exportd_cmd,
    exportd_env,
    fresh_database,
    median,
    peak_rss_mb,
    side_by_side,
    timed,
    timing_result,
    wait_completed,
    workdir,
)

DATABASE = "exportd_bench_source"
QUERY = "SELECT * FROM bench_orders"

CREATE = """
CREATE TABLE bench_orders AS
SELECT g AS id,
       'customer ' || (g % 100000) AS customer,
       'c' || (g % 100000) || '@example.com' AS email,
       (ARRAY['pending', 'paid', 'shipped', 'delivered'])[1 + g % 4] AS status,
       (g % 12) + 1 AS quantity,
       round((random() * 1000)::numeric, 2) AS amount,
       'EUR'::text AS currency,
       (g % 7 = 0) AS is_gift,
       timestamptz '2024-01-01' + g * interval '1 second' AS created_at,
       date '2024-01-01' + (g % 365) AS ship_date
FROM generate_series(1, {rows}) AS g
"""


def make_table(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_orders")
        conn.execute(CREATE.format(rows=int(rows)))  # type: ignore[arg-type]
        conn.execute("ANALYZE bench_orders")


def sources(url: str) -> str:
    return json.dumps({"bench": {"url": url, "queries": {"orders": {"sql": QUERY}}}})


def exportd_export(
    server: Server, fmt: str, compression: str, sizes: list[int] | None = None
) -> Callable[[], float]:
    """One export end to end; with `sizes`, each run's file size is appended to it."""
    body = {
        "exporter": "sql",
        "params": {"source": "bench", "query": "orders"},
        "format": fmt,
        "compression": compression,
    }

    def run() -> float:
        with server.client() as client:
            start = time.perf_counter()
            job = client.post("/v1/exports", json=body).json()
            done = wait_completed(client, job["id"])
            elapsed = time.perf_counter() - start
            if sizes is not None:
                sizes.append(sum(a["size"] for a in done["artifacts"]))
            client.delete(f"/v1/exports/{job['id']}")
        return elapsed

    return run


COPY_CSV = f"COPY ({QUERY}) TO STDOUT (FORMAT csv, HEADER)"


def raw_copy(url: str, target: Path) -> Callable[[], float]:
    """The floor for a CSV export: psycopg's COPY stream written to a file as it comes,
    nothing else (no hashing, no fsync, no bookkeeping)."""

    def run() -> None:
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cursor,
            target.open("wb") as out,
            cursor.copy(COPY_CSV) as copy,
        ):
            for block in copy:
                out.write(block)

    return lambda: timed(run)


def psql_gzip(url: str, target: Path, sizes: list[int]) -> Callable[[], float]:
    """`psql \\copy (…) to stdout csv header | gzip -6 > FILE`; appends the file's size."""
    copy = f"\\copy ({QUERY}) to stdout csv header"
    command = f"psql -X -q -d '{url}' -c \"{copy}\" | gzip -6 > '{target}'"

    def run() -> None:
        subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
        sizes.append(target.stat().st_size)

    return lambda: timed(run)


def gzip_case(server: Server, url: str, home: Path, rows: int, repeats: int) -> list[Result]:
    """Time and size of CSV + gzip against psql piped into `gzip -6`."""
    ours_sizes: list[int] = []
    their_sizes: list[int] = []
    ours, theirs, ratio = side_by_side(
        exportd_export(server, "csv", "gzip", ours_sizes),
        psql_gzip(url, home / "psql.csv.gz", their_sizes),
        repeats,
    )
    size_ratio = median(ours_sizes) / median(their_sizes)
    return [
        timing_result(
            "1 PostgreSQL -> CSV gzip",
            f"{rows:,} rows",
            ours,
            theirs,
            ratio,
            "psql \\copy | gzip -6",
            0.5,
        ),
        Result(
            "1 PostgreSQL -> CSV gzip",
            f"{rows:,} rows, file size",
            median(ours_sizes) / 1e6,
            median(their_sizes) / 1e6,
            "gzip -6",
            "MB",
            "<= 1.15",
            size_ratio <= 1.15,
            samples={"exportd": ours_sizes, "reference": their_sizes},
        ),
    ]


def psql_copy(url: str, target: Path) -> Callable[[], float]:
    command = ["psql", "-X", "-q", "-d", url, "-c", f"\\copy ({QUERY}) to '{target}' csv header"]
    return lambda: timed(lambda: subprocess.run(command, check=True))


def adbc_parquet(url: str, target: Path) -> Callable[[], float]:
    """The best plain-Python pipeline we could write: ADBC's Arrow-native fetch straight
    into a zstd ParquetWriter."""

    def run() -> None:
        import adbc_driver_postgresql.dbapi as adbc
        import pyarrow.parquet as pq

        with adbc.connect(url) as conn, conn.cursor() as cursor:
            cursor.execute(QUERY)
            reader = cursor.fetch_record_batch()
            with pq.ParquetWriter(target, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)

    return lambda: timed(run)


def pandas_csv(url: str, target: Path) -> Callable[[], float]:
    """What a typical developer writes: pandas in chunks, appended to one CSV."""

    def run() -> None:
        import pandas as pd
        import sqlalchemy as sa

        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            chunks = pd.read_sql(sa.text(QUERY), conn, chunksize=100_000)
            for index, chunk in enumerate(chunks):
                chunk.to_csv(target, mode="a" if index else "w", header=index == 0, index=False)
        engine.dispose()

    return lambda: timed(run)


def worker_peak_rss(home: Path, env: dict[str, str], server: Server, fmt: str, rows: int) -> float:
    """Peak RSS of a fresh worker process that runs one synthetic export."""
    worker = subprocess.Popen(
        exportd_cmd("worker", "--concurrency", "1"), env=env, stderr=subprocess.DEVNULL
    )
    try:
        with server.client() as client:
            body = {"exporter": "synthetic", "params": {"rows": rows}, "format": fmt}
            if fmt == "parquet":
                body["compression"] = "zstd"
            job = client.post("/v1/exports", json=body).json()
            wait_completed(client, job["id"])
            rss = peak_rss_mb(worker.pid)
            client.delete(f"/v1/exports/{job['id']}")
        return rss
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait()


def memory(quick: bool) -> list[Result]:
    small, large = (100_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    results = []
    with workdir() as home:
        env = exportd_env(home)
        server = Server(env, workers=False)
        try:
            for fmt in ("csv", "parquet"):
                low = worker_peak_rss(home, env, server, fmt, small)
                high = worker_peak_rss(home, env, server, fmt, large)
                results.append(
                    Result(
                        "4 memory",
                        f"worker peak RSS, synthetic -> {fmt}, {large:,} rows (vs {small:,})",
                        high,
                        low,
                        f"{small:,} rows",
                        "MB",
                        "<= 200 MB and ratio <= 1.2",
                        high <= 200 and high / low <= 1.2,
                    )
                )
        finally:
            server.stop()
    return results


def run(quick: bool, pg_url: str) -> list[Result]:
    rows = 200_000 if quick else 5_000_000
    repeats = 1 if quick else 3
    url = fresh_database(DATABASE)
    results: list[Result] = []
    try:
        make_table(url, rows)
        with workdir() as home:
            server = Server(exportd_env(home, sources=sources(url)), concurrency=1)
            try:
                cases = [
                    (
                        "1 PostgreSQL -> CSV",
                        "csv",
                        "none",
                        psql_copy(url, home / "psql.csv"),
                        "psql \\copy",
                        1.10,
                    ),
                    (
                        "1 PostgreSQL -> CSV",
                        "csv",
                        "none",
                        raw_copy(url, home / "raw.csv"),
                        "psycopg COPY to a file",
                        1.10,
                    ),
                    (
                        "2 PostgreSQL -> Parquet",
                        "parquet",
                        "zstd",
                        adbc_parquet(url, home / "adbc.parquet"),
                        "ADBC + pyarrow",
                        1.0,
                    ),
                    (
                        "3 PostgreSQL -> CSV",
                        "csv",
                        "none",
                        pandas_csv(url, home / "pandas.csv"),
                        "pandas read_sql + to_csv",
                        None,
                    ),
                ]
                for case, fmt, compression, reference, name, limit in cases:
                    ours, theirs, ratio = side_by_side(
                        exportd_export(server, fmt, compression), reference, repeats
                    )
                    results.append(
                        timing_result(case, f"{rows:,} rows", ours, theirs, ratio, name, limit)
                    )
                results += gzip_case(server, url, home, rows, repeats)
            finally:
                server.stop()
    finally:
        drop_database(DATABASE)
    return results + memory(quick)
