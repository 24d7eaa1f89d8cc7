"""Case 5: queue overhead. 5,000 no-op jobs drained by one worker process (jobs/s) on
SQLite and PostgreSQL, against procrastinate on the same PostgreSQL and Celery with the
local Redis; and the delay from enqueue to start for 200 jobs enqueued 20 ms apart to an
idle worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg

from bench.harness import (
    ROOT,
    Result,
    drop_database,
    exportd_cmd,
    exportd_env,
    fresh_database,
    median,
    percentile,
    workdir,
)
from bench.procrastinate_app import make_app
from exportd.jobs import NewJob
from exportd.store import SqlJobStore, open_store

CONCURRENCY = 4


def _exportd_store(home: Path, database_url: str | None) -> tuple[SqlJobStore, dict[str, str]]:
    env = exportd_env(home, database_url, poll_interval=1.0)
    url = database_url or f"sqlite:///{home / 'exportd.db'}"
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(url)
    store.migrate()
    return store, env


def _span(store: SqlJobStore) -> float:
    """Seconds from the first job start to the last completion, from the events table."""
    events = store.events_after(0, limit=10**9)
    starts = [e.created_at for e in events if e.type == "started"]
    ends = [e.created_at for e in events if e.type == "completed"]
    return (max(ends) - min(starts)).total_seconds()


def exportd_throughput(jobs: int, database_url: str | None) -> float:
    with workdir() as home:
        store, env = _exportd_store(home, database_url)
        store.enqueue_many(
            [NewJob(owner=f"o{i % 50}", exporter="noop", params={}) for i in range(jobs)]
        )
        worker = subprocess.Popen(
            exportd_cmd("worker", "--concurrency", str(CONCURRENCY)),
            env={**env, "EXPORTD_OWNER_RUNNING_CAP": "1000"},
            stderr=subprocess.DEVNULL,
        )
        try:
            while store.count_by_status().get("completed", 0) < jobs:
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait()
        span = _span(store)
        store.dispose()
        return jobs / span


def _procrastinate_span(url: str) -> float:
    with psycopg.connect(url) as conn:
        first, last = conn.execute(
            "SELECT min(at) FILTER (WHERE type = 'started'), "
            "max(at) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
        ).fetchone()  # type: ignore[misc]
    return float((last - first).total_seconds())


def procrastinate_throughput(jobs: int) -> float:
    url = fresh_database("exportd_bench_procrastinate")
    try:
        app = make_app(url)
        with app.open():
            app.schema_manager.apply_schema()
            task = app.tasks["noop"]
            for start in range(0, jobs, 1000):
                task.batch_defer(*[{} for _ in range(min(1000, jobs - start))])
        subprocess.run(
            [sys.executable, "-m", "bench.procrastinate_app", url, str(CONCURRENCY), "once"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        return jobs / _procrastinate_span(url)
    finally:
        drop_database("exportd_bench_procrastinate")


def exportd_latency(count: int, database_url: str | None) -> list[float]:
    """Milliseconds from enqueue (created_at) to start, for jobs enqueued 20 ms apart."""
    with workdir() as home:
        store, env = _exportd_store(home, database_url)
        worker = subprocess.Popen(
            exportd_cmd("worker", "--concurrency", str(CONCURRENCY)),
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)  # let it start and go idle
            ids = []
            for _ in range(count):
                ids.append(store.enqueue(NewJob(owner="o", exporter="noop", params={})).id)
                time.sleep(0.02)
            while store.count_by_status().get("completed", 0) < count:
                time.sleep(0.1)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait()
        events = store.events_after(0, limit=10**9)
        created = {e.job_id: e.created_at for e in events if e.type == "created"}
        started = {e.job_id: e.created_at for e in events if e.type == "started"}
        store.dispose()
        return [(started[i] - created[i]).total_seconds() * 1000 for i in ids]


def procrastinate_latency(count: int) -> list[float]:
    url = fresh_database("exportd_bench_procrastinate")
    try:
        app = make_app(url)
        with app.open():
            app.schema_manager.apply_schema()
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.procrastinate_app", url, str(CONCURRENCY), "wait"],
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)
            with app.open():
                task = app.tasks["noop"]
                for _ in range(count):
                    task.defer()
                    time.sleep(0.02)
            time.sleep(2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait()
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT job_id, type, at FROM procrastinate_events "
                "WHERE type IN ('deferred', 'started')"
            ).fetchall()
        deferred: dict[int, datetime] = {}
        started: dict[int, datetime] = {}
        for job_id, kind, at in rows:
            (deferred if kind == "deferred" else started)[job_id] = at
        return [(started[j] - deferred[j]).total_seconds() * 1000 for j in deferred if j in started]
    finally:
        drop_database("exportd_bench_procrastinate")


def _celery_worker() -> subprocess.Popen[bytes]:
    from bench.celery_app import worker_command

    return subprocess.Popen(
        [sys.executable, "-m", *worker_command(CONCURRENCY)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _celery_runs(expected: int, timeout: float = 600) -> list[tuple[float | None, float]]:
    """(sent, ran) of every no-op task once `expected` of them have run."""
    from bench.celery_app import DONE, _redis

    deadline = time.monotonic() + timeout
    while _redis.llen(DONE) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError("celery did not run every task")
        time.sleep(0.05)
    runs = []
    for item in _redis.lrange(DONE, 0, -1):
        sent, ran = item.decode().split(",")
        runs.append((float(sent) if sent else None, float(ran)))
    return runs


def celery_throughput(jobs: int) -> float:
    """Jobs per second from the first task's run to the last's (tasks queued before the
    worker starts, as for exportd and procrastinate)."""
    from bench.celery_app import _redis, noop

    _redis.flushdb()
    for _ in range(jobs):
        noop.delay()
    started = time.time()
    worker = _celery_worker()
    try:
        runs = _celery_runs(jobs)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait()
        _redis.flushdb()
    ran = sorted(r for _, r in runs)
    # The first task's start is not recorded; its end is, a no-op's width after it.
    return (jobs - 1) / (ran[-1] - max(ran[0], started))


def celery_latency(count: int) -> list[float]:
    from bench.celery_app import _redis, noop

    _redis.flushdb()
    worker = _celery_worker()
    try:
        time.sleep(5)  # let it start and go idle
        for _ in range(count):
            noop.delay(time.time())
            time.sleep(0.02)
        runs = _celery_runs(count)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait()
        _redis.flushdb()
    return [(ran - sent) * 1000 for sent, ran in runs if sent is not None]


def run(quick: bool, pg_url: str) -> list[Result]:
    jobs = 500 if quick else 5000
    count = 40 if quick else 200
    sqlite_rate = exportd_throughput(jobs, None)
    db = "exportd_bench_queue"
    try:
        pg_rate = exportd_throughput(jobs, fresh_database(db))
        ref_rate = procrastinate_throughput(jobs)
        pg_lat = exportd_latency(count, fresh_database(db))
    finally:
        drop_database(db)
    sqlite_lat = exportd_latency(count, None)
    ref_lat = procrastinate_latency(count)
    celery_rate = celery_throughput(jobs)
    celery_lat = celery_latency(count)
    return [
        Result(
            "5 queue",
            f"{jobs} no-op jobs, 1 worker process x{CONCURRENCY}, SQLite",
            sqlite_rate,
            unit="jobs/s",
        ),
        Result(
            "5 queue",
            f"{jobs} no-op jobs, 1 worker process x{CONCURRENCY}, PostgreSQL",
            pg_rate,
            ref_rate,
            "procrastinate",
            "jobs/s",
            ">= 1.2",
            pg_rate >= 1.2 * ref_rate,
        ),
        Result(
            "5 queue",
            f"{jobs} no-op jobs, 1 worker process x{CONCURRENCY}, PostgreSQL",
            pg_rate,
            celery_rate,
            "Celery + Redis",
            "jobs/s",
            ">= 1.0",
            pg_rate >= celery_rate,
        ),
        Result(
            "5 queue",
            "enqueue-to-start p50, PostgreSQL",
            median(pg_lat),
            median(ref_lat),
            "procrastinate",
            "ms",
            "<= 10 ms",
            median(pg_lat) <= 10,
            samples={"p99": percentile(pg_lat, 99), "reference_p99": percentile(ref_lat, 99)},
        ),
        Result(
            "5 queue",
            "enqueue-to-start p50, PostgreSQL",
            median(pg_lat),
            median(celery_lat),
            "Celery + Redis",
            "ms",
            "<= Celery's",
            median(pg_lat) <= median(celery_lat),
            samples={"p99": percentile(pg_lat, 99), "reference_p99": percentile(celery_lat, 99)},
        ),
        Result(
            "5 queue",
            "enqueue-to-start p99, PostgreSQL",
            percentile(pg_lat, 99),
            percentile(ref_lat, 99),
            "procrastinate",
            "ms",
        ),
        Result(
            "5 queue",
            "enqueue-to-start p50, SQLite",
            median(sqlite_lat),
            unit="ms",
            goal="<= 50 ms",
            met=median(sqlite_lat) <= 50,
            samples={"p99": percentile(sqlite_lat, 99)},
        ),
        Result("5 queue", "enqueue-to-start p99, SQLite", percentile(sqlite_lat, 99), unit="ms"),
    ]
