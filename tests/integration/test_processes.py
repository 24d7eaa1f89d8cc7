"""Worker processes (`exportd worker`) against a shared SQLite file or PostgreSQL:
exactly-once execution under concurrency, rescue after SIGKILL, release on SIGTERM."""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import wait_for, wait_for_status
from exportd.config import Settings
from exportd.formats import FORMATS, HashingSink, Stream
from exportd.jobs import NewJob, Status, utcnow
from exportd.storage import LocalStorage
from exportd.store import SqlJobStore, open_store
from support.exporters import slow_batch

pytestmark = pytest.mark.slow

Spawn = Callable[..., subprocess.Popen[bytes]]


def open_for(settings: Settings) -> tuple[SqlJobStore, LocalStorage]:
    store = open_store(settings.resolved_database_url())
    store.migrate()
    return store, LocalStorage(Path(settings.resolved_storage_url().removeprefix("file://")))


def test_eight_workers_run_each_of_1000_jobs_exactly_once(
    settings_for: Callable[..., Settings], spawn_worker: Spawn, tmp_path: Path
) -> None:
    """8 worker processes drain 1,000 jobs; every job runs once, on its first attempt."""
    settings = settings_for(owner_running_cap=100)
    store, _ = open_for(settings)
    log = tmp_path / "exec.log"
    params = {"log": str(log), "seconds": 0.0}
    _, jobs = store.enqueue_many(
        [NewJob(owner=f"owner{i % 10}", exporter="count", params=params) for i in range(1000)]
    )
    workers = [spawn_worker(settings, "--concurrency", "1") for _ in range(8)]
    wait_for(
        lambda: store.count_by_status().get("completed") == 1000,
        timeout=240,
        interval=0.5,
        what="1000 completed jobs",
    )
    assert all(w.poll() is None for w in workers)
    runs = Counter((line.split()[0], line.split()[1]) for line in log.read_text().splitlines())
    assert len(runs) == 1000
    assert set(runs.values()) == {1}
    assert {job_id for job_id, _ in runs} == {job.id for job in jobs}
    assert {attempt for _, attempt in runs} == {"1"}
    assert store.count_by_status() == {"completed": 1000}
    store.dispose()


def expected_slow_csv(batches: int, rows: int) -> bytes:
    buffer = io.BytesIO()
    writer = FORMATS["csv"].writer(Stream(HashingSink(buffer), "none"))
    for index in range(batches):
        writer.write(slow_batch(index, rows))
    writer.close()
    return buffer.getvalue()


def test_killed_worker_job_is_rescued_and_completes_once(
    settings_for: Callable[..., Settings], spawn_worker: Spawn
) -> None:
    """SIGKILL mid-export: the lease runs out, another worker redoes the job, and one
    complete, checksum-correct artifact results; the dead attempt's partial is gone."""
    settings = settings_for(lease_seconds=1.5)
    store, storage = open_for(settings)
    params = {"batches": 30, "rows_per_batch": 500, "delay": 0.1}
    job = store.enqueue(NewJob(owner="alice", exporter="slow", params=params))
    victim = spawn_worker(settings)
    wait_for(lambda: store.get(job.id).progress.done > 0, what="the first attempt to make progress")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert store.get(job.id).status == Status.RUNNING  # nobody knows yet
    assert len(list((storage.root / ".partial").iterdir())) == 1  # the dead attempt's file
    spawn_worker(settings)
    done = wait_for_status(store, job.id, Status.COMPLETED, Status.FAILED, timeout=60)
    assert done.status == Status.COMPLETED
    assert done.attempt == 2
    (artifact,) = done.artifacts
    data = (storage.root / artifact.storage_key).read_bytes()
    expected = expected_slow_csv(30, 500)
    assert data == expected
    assert artifact.sha256 == hashlib.sha256(expected).hexdigest()
    assert artifact.size == len(expected)
    assert list(storage.keys()) == [artifact.storage_key]
    assert list((storage.root / ".partial").iterdir()) == []
    types = [e.type for e in store.events_after(0, job_id=job.id) if e.type != "progress"]
    assert types == ["created", "started", "rescued", "started", "completed"]
    store.dispose()


def test_sigterm_releases_running_jobs_at_once(
    settings_for: Callable[..., Settings], spawn_worker: Spawn
) -> None:
    """On SIGTERM a worker gives running jobs its grace period, then releases their leases:
    the job is queued again immediately (not after the 60 s lease), its attempt uncounted."""
    settings = settings_for(lease_seconds=60)
    store, storage = open_for(settings)
    job = store.enqueue(
        NewJob(owner="alice", exporter="slow", params={"batches": 500, "delay": 0.05})
    )
    worker = spawn_worker(settings, "--grace", "0.3")
    wait_for(lambda: store.get(job.id).progress.done > 0, what="progress")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    released = store.get(job.id)
    assert (released.status, released.attempt, released.lease_owner) == (Status.QUEUED, 0, None)
    assert released.run_after <= utcnow()
    assert "released" in [e.type for e in store.events_after(0, job_id=job.id)]
    assert list((storage.root / ".partial").iterdir()) == []
    again = store.claim("next", lease_seconds=60, owner_cap=3)
    assert again is not None
    assert again.job.id == job.id
    assert again.job.attempt == 1
    store.dispose()
