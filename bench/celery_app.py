"""The second reference queue of case 5: Celery with the machine's Redis as broker (a
database of its own, emptied before each run), a thread pool of the same concurrency as
exportd's worker, in one worker process.

The no-op task records when it ran (and, for the latency runs, when it was sent) in a
Redis list, the counterpart of exportd's `started`/`completed` events; Celery itself
stores no result (its default)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("EXPORTD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
DONE = "exportd-bench:done"

app = Celery("exportd_bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue="exportd-bench",
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_redis = redis.Redis.from_url(REDIS_URL)


@app.task(name="noop", ignore_result=True)
def noop(sent: float | None = None) -> None:
    """Does nothing but say when it ran (and when it was sent)."""
    _redis.rpush(DONE, f"{sent if sent is not None else ''},{time.time()}")


def worker_command(concurrency: int) -> list[str]:
    return [
        "celery", "-A", "bench.celery_app", "worker", "--pool", "threads",
        "--concurrency", str(concurrency), "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--queues", "exportd-bench",
    ]  # fmt: skip
