"""A real worker (threads in this process) running jobs end to end on SQLite and
PostgreSQL: retries, permanent failures, cancellation, timeouts, fairness, artifacts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import wait_for, wait_for_status
from exportd.jobs import NewJob, Status
from exportd.runtime import Runtime
from exportd.storage import LocalStorage
from exportd.store.schema import jobs


def enqueue(runtime: Runtime, exporter: str, params: dict[str, object], **kw: object):  # type: ignore[no-untyped-def]
    spec = runtime.registry.get(exporter)
    validated = spec.validate(params).model_dump(mode="json")
    return runtime.store.enqueue(
        NewJob(owner=str(kw.pop("owner", "alice")), exporter=exporter, params=validated, **kw)  # type: ignore[arg-type]
    )


def files(runtime: Runtime) -> tuple[list[str], list[Path]]:
    storage = runtime.storage
    assert isinstance(storage, LocalStorage)
    return sorted(storage.keys()), sorted((storage.root / ".partial").iterdir())


def test_export_publishes_one_checksummed_artifact(make_runtime: Callable[..., Runtime]) -> None:
    """A synthetic export completes with one artifact whose size and sha256 match the file."""
    runtime = make_runtime()
    job = enqueue(runtime, "synthetic", {"rows": 5000}, compression="gzip")
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)
    assert done.status == Status.COMPLETED, done.error
    (artifact,) = done.artifacts
    with runtime.storage.open_read(artifact.storage_key) as handle:
        data = handle.read()
    assert artifact.size == len(data)
    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert artifact.rows == 5000
    assert artifact.name.endswith(".csv.gz")
    assert (done.progress.done, done.progress.total) == (5000, 5000)
    assert files(runtime) == ([artifact.storage_key], [])


def test_retry_then_succeed(make_runtime: Callable[..., Runtime]) -> None:
    """A retryable failure is retried after backoff and the second attempt completes."""
    runtime = make_runtime()
    job = enqueue(runtime, "flaky", {"fail_times": 1})
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)
    assert (done.status, done.attempt, done.error) == (Status.COMPLETED, 2, None)
    types = [e.type for e in runtime.store.events_after(0, job_id=job.id) if e.type != "progress"]
    assert types == ["created", "started", "retry_scheduled", "started", "completed"]


def test_permanent_failure_is_not_retried(make_runtime: Callable[..., Runtime]) -> None:
    """A permanent error fails the job on its first attempt with the exporter's code."""
    runtime = make_runtime()
    job = enqueue(runtime, "flaky", {"permanent": True, "code": "forbidden"}, max_attempts=5)
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.FAILED, Status.COMPLETED)
    assert done.attempt == 1
    assert done.error is not None
    assert (done.error.code, done.error.retryable) == ("forbidden", False)


def test_retries_stop_at_max_attempts(make_runtime: Callable[..., Runtime]) -> None:
    """A job that keeps failing is failed after max_attempts, keeping the last error."""
    runtime = make_runtime()
    job = enqueue(runtime, "flaky", {"fail_times": 99}, max_attempts=3)
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.FAILED, Status.COMPLETED)
    assert done.attempt == 3
    assert done.error is not None
    assert done.error.retryable
    assert done.error.message == "attempt 3 failed"


def test_invalid_stored_params_fail_permanently(make_runtime: Callable[..., Runtime]) -> None:
    """Params that no longer validate fail the job at once with invalid_params."""
    runtime = make_runtime()
    job = runtime.store.enqueue(NewJob(owner="a", exporter="synthetic", params={"rows": -1}))
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.FAILED)
    assert done.error is not None
    assert done.error.code == "invalid_params"
    assert done.attempt == 1


def test_cancel_running_job_stops_within_a_second(make_runtime: Callable[..., Runtime]) -> None:
    """A running export stops within 1 s of the cancel request and leaves no file."""
    runtime = make_runtime()
    job = enqueue(runtime, "slow", {"batches": 200, "delay": 0.05})
    runtime.start_worker(concurrency=1)
    wait_for(lambda: runtime.store.get(job.id).progress.done > 0, what="progress")
    runtime.store.request_cancel(job.id)
    done = wait_for_status(runtime.store, job.id, Status.CANCELLED, Status.COMPLETED)
    assert done.status == Status.CANCELLED
    assert done.artifacts == ()
    events = {e.type: e for e in runtime.store.events_after(0, job_id=job.id)}
    delay = (events["cancelled"].created_at - events["cancel_requested"].created_at).total_seconds()
    assert delay < 1.0
    assert files(runtime) == ([], [])


def test_cancelled_queued_job_never_runs(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    """A job cancelled before it was claimed is never executed."""
    runtime = make_runtime()
    log = tmp_path / "exec.log"
    job = enqueue(runtime, "count", {"log": str(log)})
    other = enqueue(runtime, "count", {"log": str(log)})
    runtime.store.request_cancel(job.id)
    runtime.start_worker(concurrency=1)
    wait_for_status(runtime.store, other.id, Status.COMPLETED)
    assert runtime.store.get(job.id).status == Status.CANCELLED
    assert [line.split()[0] for line in log.read_text().splitlines()] == [other.id]


def test_max_runtime_fails_the_job(make_runtime: Callable[..., Runtime]) -> None:
    """An attempt running past max_runtime is stopped and failed, not retried."""
    runtime = make_runtime()
    job = enqueue(runtime, "slow", {"batches": 200, "delay": 0.05}, max_runtime_seconds=0.5)
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.FAILED, Status.COMPLETED)
    assert done.error is not None
    assert (done.error.code, done.error.retryable, done.attempt) == (
        "max_runtime_exceeded",
        False,
        1,
    )
    assert files(runtime) == ([], [])


@pytest.mark.slow
def test_owner_fairness(make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    """One owner with many queued jobs never exceeds its cap and cannot starve another owner."""
    runtime = make_runtime(owner_running_cap=2)
    log = tmp_path / "exec.log"
    big = [
        enqueue(runtime, "count", {"log": str(log), "seconds": 0.15}, owner="big")
        for _ in range(12)
    ]
    small = enqueue(runtime, "count", {"log": str(log), "seconds": 0.15}, owner="small")
    runtime.start_worker(concurrency=4)
    for job in [*big, small]:
        wait_for_status(runtime.store, job.id, Status.COMPLETED)
    runs = [line.split() for line in log.read_text().splitlines()]
    spans = {(owner, float(start), float(end)) for _, _, owner, start, end in runs}
    big_spans = [(s, e) for owner, s, e in spans if owner == "big"]
    most_at_once = max(sum(1 for s2, e2 in big_spans if s2 <= s < e2) for s, _ in big_spans)
    assert most_at_once <= 2
    small_start = next(s for owner, s, _ in spans if owner == "small")
    assert small_start < sorted(s for s, _ in big_spans)[2]  # among the first few, not last


def test_attempt_whose_lease_is_taken_stops_and_writes_nothing(
    make_runtime: Callable[..., Runtime],
) -> None:
    """When another worker takes a running job's lease, the lease keeper stops the attempt
    and none of its writes land."""
    runtime = make_runtime()
    job = enqueue(runtime, "slow", {"batches": 200, "delay": 0.05})
    worker = runtime.start_worker(concurrency=1)
    wait_for(lambda: runtime.store.get(job.id).progress.done > 0, what="progress")
    with runtime.store.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job.id)
            .values(lease_owner="thief", claim_id="thief-claim")
        )
    wait_for(lambda: worker.running() == [], what="the attempt to stop")
    stored = runtime.store.get(job.id)
    assert (stored.status, stored.claim_id, stored.artifacts) == (
        Status.RUNNING,
        "thief-claim",
        (),
    )
    assert files(runtime) == ([], [])


def test_multi_slot_worker_runs_every_job_once(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    """A four-slot worker draining a queue (claims batched and chained to completions) runs
    each job exactly once and completes them all."""
    runtime = make_runtime(owner_running_cap=2)
    log = tmp_path / "exec.log"
    queued = [
        enqueue(runtime, "count", {"log": str(log)}, owner=f"o{index % 3}") for index in range(30)
    ]
    runtime.start_worker(concurrency=4)
    for job in queued:
        wait_for_status(runtime.store, job.id, Status.COMPLETED)
    ran = sorted(line.split()[0] for line in log.read_text().splitlines())
    assert ran == sorted(job.id for job in queued)
    starts = [e for e in runtime.store.events_after(0, limit=10_000) if e.type == "started"]
    assert len(starts) == len(queued)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_an_export_holds_one_batch_at_a_time(
    make_runtime: Callable[..., Runtime], fmt: str
) -> None:
    """Nothing keeps a batch once it is written, so the exporter's next batch is never
    in memory beside it."""
    runtime = make_runtime()
    job = runtime.store.enqueue(NewJob(owner="a", exporter="handoff", params={}, format=fmt))
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)
    assert done.error is None
    assert done.status == Status.COMPLETED
    assert done.progress.done == 400
