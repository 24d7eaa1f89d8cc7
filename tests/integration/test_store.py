"""The job store against real SQLite and PostgreSQL: claims, fencing, rescue, owner actions,
and the migrated schema."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata

from exportd.errors import InvalidTransition, JobNotFound, LeaseLost
from exportd.jobs import Artifact, ErrorInfo, NewJob, Progress, Status, utcnow
from exportd.store import SqlJobStore, open_store
from exportd.store.migrate import head, migration_context
from exportd.store.schema import SCHEMA_REVISION, metadata


def new(owner: str = "alice", **kw: object) -> NewJob:
    return NewJob(owner=owner, exporter="synthetic", params={"rows": 1}, **kw)  # type: ignore[arg-type]


def claim(store: SqlJobStore, worker: str = "w", lease: float = 30, cap: int = 3):  # type: ignore[no-untyped-def]
    return store.claim(worker, lease_seconds=lease, owner_cap=cap)


def test_migrated_schema_matches_declared(store: SqlJobStore) -> None:
    """Running the migrations yields exactly the declared tables, columns and indexes."""
    with store.engine.connect() as conn:
        diff = compare_metadata(migration_context(conn), metadata)
    assert diff == []
    assert store.migrations_current()


def test_schema_revision_is_the_head_of_the_migrations(store: SqlJobStore) -> None:
    """`SCHEMA_REVISION`, which lets a current store skip loading Alembic, is the head."""
    assert head() == SCHEMA_REVISION
    assert store.schema_revision() == SCHEMA_REVISION


def test_a_new_database_is_not_current_until_migrated(tmp_path: Path) -> None:
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert fresh.schema_revision() is None
        assert not fresh.migrations_current()
        fresh.migrate()
        assert fresh.migrations_current()
        fresh.migrate()  # already current: nothing to do
        assert fresh.schema_revision() == SCHEMA_REVISION
    finally:
        fresh.dispose()


def test_claim_order_priority_then_run_after_then_age(store: SqlJobStore) -> None:
    """Higher priority first; then the earlier run_after; then the older job."""
    now = utcnow()
    old = store.enqueue(new(run_after=now - timedelta(seconds=5)))
    young = store.enqueue(new(run_after=now - timedelta(seconds=5)))
    earlier = store.enqueue(new(run_after=now - timedelta(seconds=10)))
    urgent = store.enqueue(new(priority=5))
    later = store.enqueue(new(run_after=now + timedelta(hours=1)))
    order = [claim(store, cap=10).job.id for _ in range(4)]  # type: ignore[union-attr]
    assert order == [urgent.id, earlier.id, old.id, young.id]
    assert claim(store, cap=10) is None  # `later` is not due yet
    assert store.get(later.id).status == Status.QUEUED


def test_claim_counts_attempt_and_takes_lease(store: SqlJobStore) -> None:
    """A claim makes the job running, counts the attempt and sets a lease in the future."""
    job = store.enqueue(new())
    got = claim(store, lease=30)
    assert got is not None
    assert got.job.id == job.id
    assert got.job.status == Status.RUNNING
    assert got.job.attempt == 1
    assert got.job.lease_expires_at is not None
    assert got.job.lease_expires_at > utcnow()
    assert [e.type for e in store.events_after(0, job_id=job.id)] == ["created", "started"]


def test_owner_cap_skips_owners_at_their_cap(store: SqlJobStore) -> None:
    """With a cap of 2, a third job of the same owner waits while another owner's runs."""
    for _ in range(5):
        store.enqueue(new("big"))
    small = store.enqueue(new("small"))
    owners = [claim(store, cap=2).job.owner for _ in range(3)]  # type: ignore[union-attr]
    assert owners == ["big", "big", "small"]
    assert claim(store, cap=2) is None
    assert store.get(small.id).status == Status.RUNNING


def test_zombie_writes_are_fenced(store: SqlJobStore) -> None:
    """After its lease expired and the job was taken again, the old worker can change nothing."""
    store.enqueue(new(max_attempts=3))
    zombie = claim(store, "zombie", lease=0.05)
    assert zombie is not None
    time.sleep(0.1)
    rescued = store.rescue_expired(lambda attempt: 0.0)
    assert [(r.job_id, r.status) for r in rescued] == [(zombie.job.id, Status.QUEUED)]
    fresh = claim(store, "fresh")
    assert fresh is not None
    assert fresh.job.attempt == 2
    with pytest.raises(LeaseLost):
        store.report_progress(zombie, Progress(99, 100))
    with pytest.raises(LeaseLost):
        store.heartbeat(zombie, lease_seconds=30)
    with pytest.raises(LeaseLost):
        store.fail(zombie, ErrorInfo("x", "y", True), retry_at=None)
    art = Artifact(zombie.job.id, "f.csv", "k", 1, "0" * 64, "text/csv")
    with pytest.raises(LeaseLost):
        store.complete(zombie, [art], Progress(1, 1))
    store.report_progress(fresh, Progress(3, 10))
    job = store.get(fresh.job.id)
    assert (job.status, job.attempt, job.progress.done, job.artifacts) == (Status.RUNNING, 2, 3, ())


def test_rescue_fails_with_worker_lost_when_attempts_are_used(store: SqlJobStore) -> None:
    """A lost last attempt fails the job with code worker_lost."""
    job = store.enqueue(new(max_attempts=1))
    assert claim(store, lease=0.01) is not None
    time.sleep(0.05)
    store.rescue_expired(lambda attempt: 0.0)
    failed = store.get(job.id)
    assert failed.status == Status.FAILED
    assert failed.error is not None
    assert failed.error.code == "worker_lost"


def test_retryable_failure_requeues_with_backoff(store: SqlJobStore) -> None:
    """A retryable failure queues the job again at the given time, keeping the error."""
    job = store.enqueue(new())
    got = claim(store)
    assert got is not None
    at = utcnow() + timedelta(seconds=60)
    store.fail(got, ErrorInfo("upstream", "try later", True), retry_at=at)
    queued = store.get(job.id)
    assert queued.status == Status.QUEUED
    assert queued.attempt == 1
    assert abs((queued.run_after - at).total_seconds()) < 0.01
    assert queued.error is not None
    assert queued.error.code == "upstream"
    assert claim(store) is None


def test_cancel_queued_is_immediate_and_running_is_flagged(store: SqlJobStore) -> None:
    """Cancelling a queued job ends it; a running one gets cancel_requested for its runner."""
    queued = store.enqueue(new())
    assert store.request_cancel(queued.id).status == Status.CANCELLED
    running = store.enqueue(new())
    got = claim(store)
    assert got is not None
    assert got.job.id == running.id
    flagged = store.request_cancel(running.id)
    assert flagged.status == Status.RUNNING
    assert flagged.cancel_requested
    assert store.heartbeat(got, lease_seconds=30) is True
    assert store.mark_cancelled(got).status == Status.CANCELLED


def test_release_requeues_at_once_without_counting(store: SqlJobStore) -> None:
    """A released attempt (worker shutdown) is queued now and does not use up an attempt."""
    job = store.enqueue(new())
    got = claim(store)
    assert got is not None
    released = store.release(got)
    assert (released.status, released.attempt, released.lease_owner) == (Status.QUEUED, 0, None)
    assert released.run_after <= utcnow()
    again = claim(store)
    assert again is not None
    assert again.job.id == job.id
    assert again.job.attempt == 1
    with pytest.raises(LeaseLost):
        store.report_progress(got, Progress(1))


def test_retry_starts_a_new_series_only_from_failed_or_cancelled(store: SqlJobStore) -> None:
    """Retry resets attempts and errors of a failed job; a queued job cannot be retried."""
    job = store.enqueue(new(max_attempts=1))
    got = claim(store)
    assert got is not None
    store.fail(got, ErrorInfo("boom", "broke", False), retry_at=None)
    again = store.retry(job.id)
    assert (again.status, again.attempt, again.error) == (Status.QUEUED, 0, None)
    with pytest.raises(InvalidTransition):
        store.retry(job.id)


def test_owner_scoping_and_delete(store: SqlJobStore) -> None:
    """Another owner's job is not found; delete removes a finished job and its events."""
    job = store.enqueue(new("alice"))
    with pytest.raises(JobNotFound):
        store.get(job.id, owner="mallory")
    with pytest.raises(JobNotFound):
        store.request_cancel(job.id, owner="mallory")
    store.request_cancel(job.id, owner="alice")
    store.delete(job.id, owner="alice")
    with pytest.raises(JobNotFound):
        store.get(job.id)
    assert store.events_after(0, job_id=job.id) == []


def test_list_is_newest_first_with_cursor(store: SqlJobStore) -> None:
    """Pages come newest first and the cursor walks through all of them exactly once."""
    ids = [store.enqueue(new("alice")).id for _ in range(7)]
    store.enqueue(new("bob"))
    seen, cursor = [], None
    while True:
        page = store.list_jobs("alice", limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_processes_migrating_a_fresh_store_at_once_all_succeed(
    tmp_path: Path, dialect: str
) -> None:
    """Five `exportd migrate` at once on a new database: each waits its turn, all exit 0,
    and the schema ends at the head revision (every worker on a fresh SQLite file
    migrates it at start)."""
    import os
    import subprocess
    import sys
    from contextlib import ExitStack

    from conftest import temporary_pg_database

    with ExitStack() as stack:
        if dialect == "sqlite":
            url = f"sqlite:///{tmp_path / 'fresh.db'}"
        else:
            url = stack.enter_context(temporary_pg_database("exportd_migrate"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
        env.update(EXPORTD_DATABASE_URL=url, EXPORTD_HOME=str(tmp_path / "home"))
        command = [sys.executable, "-m", "exportd", "migrate"]
        procs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(5)
        ]
        results = [proc.communicate(timeout=120) for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * 5, [err for _, err in results]
        fresh = open_store(url)
        stack.callback(fresh.dispose)  # also when the assertion fails: no open connection
        assert fresh.schema_revision() == SCHEMA_REVISION
