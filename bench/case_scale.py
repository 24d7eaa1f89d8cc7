"""Case 10: cost at scale. The same four measures on an empty PostgreSQL job store and on
one holding 1,000,000 finished jobs and 10,000,000 events (quick: 20,000 and 200,000),
made in bulk with SQL: `POST /v1/exports` (create), a worker's claim, `GET
/v1/exports/{id}`, and the first page of `GET /v1/exports` for an owner that has a tenth
of the finished jobs. Each measure is the p50 of many calls; the ratio is full / empty.

The API runs as `exportd serve --no-workers`; claims are made from this process through
the store (each created job is claimed, then completed untimed), so the queue holds one
job at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.harness import (
    Result,
    Server,
    drop_database,
    exportd_env,
    fresh_database,
    median,
    workdir,
)
from exportd.jobs import Progress
from exportd.store import open_store

DATABASE = "exportd_bench_scale"
OWNERS = 10
"""Owners of the bulk jobs; the measured owner (`bench`, the server's token) has one
share of them, the others the rest."""

BULK_JOBS = """
INSERT INTO exportd_jobs (
    id, owner, exporter, params, format, compression, status, priority, attempt,
    max_attempts, run_after, cancel_requested, progress_done, progress_total,
    progress_unit, max_runtime_seconds, options, created_at, started_at, finished_at,
    updated_at, labels, manual_retries
)
SELECT
    -- UUID-shaped ids that sort before any new one (a 2020 timestamp prefix)
    '01700000-' || lpad(to_hex(g >> 48), 4, '0')
        || '-7' || lpad(to_hex((g >> 36) & 4095), 3, '0')
        || '-8' || lpad(to_hex((g >> 24) & 4095), 3, '0')
        || '-' || lpad(to_hex(g & 16777215), 12, '0'),
    CASE WHEN g % {owners} = 0 THEN 'bench' ELSE 'owner' || (g % {owners}) END,
    'noop', '{{}}', 'csv', 'none', 'completed', 0, 1, 3,
    now() - interval '30 days', false, 100, 100, 'rows', 3600, '{{}}',
    now() - interval '30 days' + g * interval '1 millisecond',
    now() - interval '30 days' + g * interval '1 millisecond',
    now() - interval '30 days' + g * interval '1 millisecond',
    now() - interval '30 days', '{{}}', 0
FROM generate_series(1, {count}) AS g
"""

BULK_EVENTS = """
INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
SELECT j.id, j.owner, e.type, '{{}}', j.created_at
FROM (SELECT id, owner, created_at FROM exportd_jobs ORDER BY id LIMIT {jobs}) AS j
CROSS JOIN (
    VALUES ('created'), ('started'), ('progress'), ('progress'), ('progress'),
           ('progress'), ('progress'), ('progress'), ('progress'), ('completed')
) AS e(type)
"""


def fill(url: str, jobs: int, events: int) -> None:
    """`jobs` finished jobs and `events` events (ten per job, on the first jobs)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BULK_JOBS.format(owners=OWNERS, count=jobs))  # type: ignore[arg-type]
        conn.execute(BULK_EVENTS.format(jobs=events // 10))  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE exportd_jobs")
        conn.execute("VACUUM ANALYZE exportd_job_events")


def p50_ms(calls: int, call: Callable[[], Any]) -> float:
    """The median milliseconds of `calls` calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return median(times)


def measure(url: str, calls: int) -> dict[str, float]:
    """p50 milliseconds of each measure against the store at `url`."""
    with workdir() as home:
        server = Server(exportd_env(home, url), workers=False)
        store = open_store(url)
        _, secret = store.create_token("bench", admin=False)
        try:
            with server.client() as client:
                client.headers["Authorization"] = f"Bearer {secret}"
                body = {"exporter": "noop", "params": {}}
                created: list[str] = []
                creates: list[float] = []
                claims: list[float] = []
                for _ in range(calls):  # one at a time: the owner's active limit holds
                    start = time.perf_counter()
                    answer = client.post("/v1/exports", json=body)
                    creates.append((time.perf_counter() - start) * 1000)
                    created.append(answer.json()["id"])
                    start = time.perf_counter()
                    found = store.claim("bench-worker", lease_seconds=60, owner_cap=1000)
                    claims.append((time.perf_counter() - start) * 1000)
                    assert found is not None and found.job.id == created[-1]
                    store.complete(found, [], Progress(0, 0))
                results = {"create": median(creates), "claim": median(claims)}
                one = created[len(created) // 2]
                results["get"] = p50_ms(calls, lambda: client.get(f"/v1/exports/{one}"))
                results["list"] = p50_ms(calls, lambda: client.get("/v1/exports?limit=50"))
        finally:
            store.dispose()
            server.stop()
    return results


def run(quick: bool, pg_url: str) -> list[Result]:
    jobs, events = (20_000, 200_000) if quick else (1_000_000, 10_000_000)
    calls = 100 if quick else 300
    try:
        empty = measure(prepared(0, 0), calls)
        started = time.monotonic()
        url = prepared(jobs, events)
        filled_in = time.monotonic() - started
        full = measure(url, calls)
    finally:
        drop_database(DATABASE)
    names = {
        "create": "POST /v1/exports",
        "claim": "a worker's claim",
        "get": "GET /v1/exports/{id}",
        "list": "GET /v1/exports, first page of an owner",
    }
    return [
        Result(
            "10 scale",
            f"{label} p50, {jobs:,} jobs / {events:,} events vs empty",
            full[key],
            empty[key],
            "empty store",
            "ms",
            "<= 1.25",
            full[key] / empty[key] <= 1.25,
            notes=f"bulk fill {filled_in:.0f} s",
        )
        for key, label in names.items()
    ]


def prepared(jobs: int, events: int) -> str:
    """A fresh, migrated PostgreSQL job store holding `jobs` and `events` in bulk."""
    url = fresh_database(DATABASE)
    store = open_store(url)
    store.migrate()
    store.dispose()
    if jobs:
        fill(url, jobs, events)
    return url
