"""What a worker records about each attempt: a log line and metrics when it starts and
when it ends. O(1) per attempt, from what the worker already holds; no store query."""

from __future__ import annotations

import logging

from exportd.jobs import Job, Status
from exportd.observability import metrics

log = logging.getLogger("exportd.worker.attempts")


def outcome(result: Job | None, stop_reason: str | None) -> str:
    """How an attempt ended, from the job as its end stored it: `completed`, `failed`,
    `cancelled`, `retried` (failed, queued again), `released` (given back at shutdown)
    or `lost` (nothing it did was kept: its lease was taken, or the store was away)."""
    if result is None:
        return "lost"
    if result.status == Status.QUEUED:
        return "released" if stop_reason == "shutdown" else "retried"
    return str(result.status)


def started(job: Job) -> None:
    """The claimed `job` starts its attempt."""
    waited = 0.0
    if job.started_at is not None:
        waited = max((job.started_at - job.run_after).total_seconds(), 0.0)
    metrics.ATTEMPTS.labels(job.exporter).inc()
    metrics.QUEUE_WAIT.labels(job.exporter, job.format).observe(waited)
    log.info(
        "attempt started",
        extra={"format": job.format, "queue_wait_seconds": round(waited, 3)},
    )


def ended(job: Job, result: Job | None, seconds: float, stop_reason: str | None) -> None:
    """The attempt of `job` (as claimed) ended after `seconds` with `result` (as stored)."""
    how = outcome(result, stop_reason)
    metrics.JOB_DURATION.labels(job.exporter, job.format, how).observe(seconds)
    fields: dict[str, object] = {"outcome": how, "seconds": round(seconds, 3)}
    if result is not None and how == "completed":
        size = sum(a.size for a in result.artifacts)
        metrics.ROWS.labels(job.exporter, job.format).inc(result.progress.done)
        metrics.BYTES.labels(job.exporter, job.format).inc(size)
        fields.update(rows=result.progress.done, bytes=size)
    elif result is not None and how in ("failed", "retried") and result.error is not None:
        metrics.FAILURES.labels(job.exporter, result.error.code).inc()
        fields["error_code"] = result.error.code
    log.info("attempt ended", extra=fields)


def rescued(status: Status) -> None:
    """This process's rescuer put back a job whose lease ran out; it is now `status`."""
    metrics.RESCUES.labels(str(status)).inc()
