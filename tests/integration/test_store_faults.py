"""The end of an attempt survives transient store errors: a completion (or failure,
release) interrupted by a lost acknowledgement, a real PostgreSQL deadlock or a killed
connection is retried and lands exactly once; a store error is never the export's
failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conftest import wait_for, wait_for_status
from exportd.errors import LeaseLost, TransientStoreError
from exportd.jobs import Artifact, Claim, ErrorInfo, NewJob, Progress, Status
from exportd.runtime import Runtime
from exportd.store import PostgresJobStore, SqlJobStore, open_store, postgres
from exportd.store.postgres import EVENTS_LOCK


def claimed(store: SqlJobStore, **kw: Any) -> Claim:
    store.enqueue(NewJob(owner="alice", exporter="synthetic", params={"rows": 1}, **kw))
    claim = store.claim("w", lease_seconds=30, owner_cap=3)
    assert claim is not None
    return claim


def artifact(claim: Claim) -> Artifact:
    key = f"alice/{claim.job.id}/{claim.token}/f.csv"
    return Artifact(claim.job.id, "f.csv", key, 3, "0" * 64, "text/csv")


def lose_acknowledgements(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch, times: int
) -> list[int]:
    """The next `times` write transactions of this thread commit, and then their caller
    is told the connection was lost (as when the server dies between the commit and its
    reply)."""
    real = store._tx
    lost: list[int] = []
    thread = threading.get_ident()

    @contextmanager
    def tx(write: bool = False) -> Iterator[Connection]:
        with real(write) as conn:
            yield conn
        if write and len(lost) < times and threading.get_ident() == thread:
            lost.append(1)
            raise TransientStoreError("connection lost after commit (injected)")

    monkeypatch.setattr(store, "_tx", tx)
    return lost


def types(store: SqlJobStore, job_id: str) -> list[str]:
    return [e.type for e in store.events_after(0, job_id=job_id) if e.type != "progress"]


def test_a_completion_whose_acknowledgement_was_lost_completes_once(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try commits but reports a lost connection; the retry finds the job
    completed by this very claim and returns it: one artifact, one `completed` event."""
    claim = claimed(store)
    lost = lose_acknowledgements(store, monkeypatch, times=1)
    job = store.complete(claim, [artifact(claim)], Progress(1, 1))
    assert lost == [1]
    assert job.status == Status.COMPLETED
    stored = store.get(claim.job.id)
    assert (stored.status, [a.name for a in stored.artifacts]) == (Status.COMPLETED, ["f.csv"])
    assert types(store, claim.job.id) == ["created", "started", "completed"]
    assert store.stats.snapshot()["store_retries"] == 1


@pytest.mark.parametrize("end", ["fail", "release", "cancel"])
def test_every_end_of_an_attempt_is_retried_and_lands_once(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """Failing, releasing and cancelling retry a lost acknowledgement the same way and
    write their event once."""
    claim = claimed(store)
    lose_acknowledgements(store, monkeypatch, times=2)
    if end == "fail":
        job = store.fail(claim, ErrorInfo("boom", "broke", False), retry_at=None)
        assert (job.status, types(store, job.id)[-1]) == (Status.FAILED, "failed")
    elif end == "release":
        job = store.release(claim)
        assert (job.status, job.attempt, types(store, job.id)[-1]) == (
            Status.QUEUED,
            0,
            "released",
        )
    else:
        job = store.mark_cancelled(claim)
        assert (job.status, types(store, job.id)[-1]) == (Status.CANCELLED, "cancelled")
    assert len(types(store, claim.job.id)) == 3


def test_a_retry_that_finds_another_claims_outcome_is_a_lost_lease(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the job was rescued while the completion was being retried, the retry does not
    mistake the rescue for its own success: `LeaseLost`, and nothing of it is stored."""
    claim = claimed(store, max_attempts=3)
    real = store._tx
    calls: list[int] = []

    @contextmanager
    def tx(write: bool = False) -> Iterator[Connection]:
        if write and not calls:
            calls.append(1)
            with real(True) as conn:  # the lease runs out and the rescuer takes the job
                conn.execute(
                    sa.text("UPDATE exportd_jobs SET lease_expires_at = :past WHERE id = :id"),
                    {"past": "2000-01-01 00:00:00", "id": claim.job.id},
                )
            store.rescue_expired(lambda attempt: 0.0)
            raise TransientStoreError("connection lost (injected)")
        with real(write) as conn:
            yield conn

    monkeypatch.setattr(store, "_tx", tx)
    with pytest.raises(LeaseLost):
        store.complete(claim, [artifact(claim)], Progress(1, 1))
    stored = store.get(claim.job.id)
    assert (stored.status, stored.artifacts, stored.claim_id) == (Status.QUEUED, (), None)


def backend_waiting_on(conn: psycopg.Connection[Any], pattern: str) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (pattern,),
    ).fetchone()
    return None if row is None else int(row[0])


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresJobStore]:
    store = open_store(pg_url)
    store.truncate_all()
    assert isinstance(store, PostgresJobStore)
    yield store
    store.dispose()


@pytest.mark.postgres
def test_a_completion_aborted_by_a_real_deadlock_is_retried(pg_store: PostgresJobStore) -> None:
    """Another transaction holds the events-order lock, the completion locks the job's row
    and waits for it, then the other transaction waits for the row: PostgreSQL breaks the
    cycle by aborting the completion (its deadlock check runs first), which is retried
    and completes once."""
    store = pg_store
    claim = claimed(store)
    url = store.raw_dsn()
    with psycopg.connect(url, autocommit=True) as watcher, psycopg.connect(url) as other:
        other.execute("SET deadlock_timeout = '20s'")  # the completion detects it first
        other.execute(f"SELECT pg_advisory_xact_lock({EVENTS_LOCK})")
        result: list[Any] = []
        worker = threading.Thread(
            target=lambda: result.append(store.complete(claim, [artifact(claim)], Progress(1, 1)))
        )
        worker.start()
        wait_for(lambda: backend_waiting_on(watcher, "%WITH queued AS%"), what="the completion")
        blocked = threading.Thread(
            target=lambda: other.execute(
                "UPDATE exportd_jobs SET updated_at = now() WHERE id = %s", (claim.job.id,)
            )
        )
        blocked.start()
        blocked.join(timeout=60)  # the completion was aborted: the row came free
        other.commit()
        worker.join(timeout=60)
    assert [job.status for job in result] == [Status.COMPLETED]
    assert types(store, claim.job.id) == ["created", "started", "completed"]
    assert len(store.get(claim.job.id).artifacts) == 1
    assert store.stats.snapshot()["store_retries"] >= 1


@pytest.mark.postgres
def test_a_completion_whose_connection_is_killed_is_retried(pg_store: PostgresJobStore) -> None:
    """The completion's backend is terminated while it waits (as in a server restart):
    the error is transient, the retry runs on a new connection and completes once."""
    store = pg_store
    claim = claimed(store)
    url = store.raw_dsn()
    with psycopg.connect(url, autocommit=True) as watcher, psycopg.connect(url) as other:
        other.execute(f"SELECT pg_advisory_xact_lock({EVENTS_LOCK})")
        result: list[Any] = []
        worker = threading.Thread(
            target=lambda: result.append(store.complete(claim, [artifact(claim)], Progress(1, 1)))
        )
        worker.start()
        pid = wait_for(lambda: backend_waiting_on(watcher, "%WITH queued AS%"), what="the wait")
        watcher.execute("SELECT pg_terminate_backend(%s)", (pid,))
        other.commit()
        worker.join(timeout=60)
    assert [job.status for job in result] == [Status.COMPLETED]
    assert types(store, claim.job.id) == ["created", "started", "completed"]


def test_a_worker_whose_completion_fails_transiently_still_completes_the_job(
    make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the runner's completion meets lost acknowledgements; the export is
    neither failed nor run again, and exactly one file is left, the one referred to."""
    runtime = make_runtime()
    job = runtime.store.enqueue(
        NewJob(owner="alice", exporter="synthetic", params={"rows": 50}, max_attempts=1)
    )
    real = runtime.store.complete
    lost: list[int] = []

    def complete(claim: Claim, produced: Any, progress: Progress, **kw: Any) -> Any:
        lose_acknowledgements(runtime.store, monkeypatch, times=2)
        lost.append(1)
        return real(claim, produced, progress, **kw)

    monkeypatch.setattr(runtime.store, "complete", complete)
    runtime.start_worker(concurrency=1)
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)
    assert (done.status, done.attempt, len(done.artifacts)) == (Status.COMPLETED, 1, 1)
    assert lost == [1]
    assert types(runtime.store, job.id) == ["created", "started", "completed"]
    assert list(runtime.storage.keys()) == [done.artifacts[0].storage_key]


@pytest.mark.postgres
def test_a_failed_claim_round_keeps_the_claims_committed_before_it(
    pg_store: PostgresJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim takes jobs in rounds, each committed with its take. Owner `a` has two
    jobs and a cap of one, so the first round takes a1 and b1 and a second round is
    needed for c1; when that round's statement fails, the two claims already committed
    are returned (and stay running), and c1 stays queued."""
    store = pg_store
    made = [
        store.enqueue(NewJob(owner=owner, exporter="synthetic", params={})).id
        for owner in ("a", "a", "b", "c")
    ]
    picks: list[str] = []
    real = postgres._run

    def run(conn: Connection, statement: str, params: dict[str, Any], **kw: Any) -> Any:
        if statement is postgres.PICK:
            picks.append(statement)
            if len(picks) == 2:
                statement = "SELECT 1 / 0"  # a real error from the server
        return real(conn, statement, params, **kw)

    monkeypatch.setattr(postgres, "_run", run)
    taken = store.claim_many("w", 3, lease_seconds=30, owner_cap=1)
    assert len(picks) == 2  # the second round was reached
    assert [c.job.id for c in taken] == [made[0], made[2]]
    assert [store.get(i).status for i in made] == [
        Status.RUNNING,
        Status.QUEUED,
        Status.RUNNING,
        Status.QUEUED,
    ]
    assert types(store, made[2]) == ["created", "started"]
    monkeypatch.setattr(postgres, "_run", real)
    again = store.claim_many("w", 3, lease_seconds=30, owner_cap=1)
    assert [c.job.id for c in again] == [made[3]]  # a is still at its cap


@pytest.mark.postgres
def test_a_pooled_connection_that_died_while_idle_is_replaced(
    pg_store: PostgresJobStore,
) -> None:
    """Connections are pinged only when they sat unused for a while: one killed while
    idle (as in a server restart) is replaced at checkout and the read succeeds; one
    killed right after use fails its transaction as transient, and the next works."""
    store = pg_store
    job = store.enqueue(NewJob(owner="a", exporter="synthetic", params={}))

    def kill_store_backends() -> int:
        with psycopg.connect(store.raw_dsn(), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            ).fetchone()
        assert killed is not None
        return int(killed[0])

    store.get(job.id)
    time.sleep(postgres.PING_AFTER_IDLE_SECONDS + 0.3)
    assert kill_store_backends() >= 1
    assert store.get(job.id).id == job.id
    store.get(job.id)
    assert kill_store_backends() >= 1
    with pytest.raises(TransientStoreError):
        store.get(job.id)
    assert store.get(job.id).id == job.id
