"""Waking idle workers: notifications when they work, polling when they do not."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from conftest import wait_for, wait_for_status
from exportd.jobs import NewJob, Status
from exportd.runtime import Runtime


@pytest.mark.postgres
def test_a_dead_listen_connection_does_not_stall_pickup(
    pg_url: str, make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its LISTEN connection killed by the server, an idle worker still picks up a new
    job through the jittered polling fallback (and listens again afterwards)."""
    runtime = make_runtime(database_url=pg_url, poll_interval=0.5)
    runtime.start_worker(concurrency=1)

    def listeners() -> list[int]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE query = 'LISTEN exportd_jobs' AND datname = current_database()"
            ).fetchall()
        return [pid for (pid,) in rows]

    (pid,) = wait_for(listeners, what="the worker to LISTEN")
    # Keep the listener from coming back soon, so only polling can find the job.
    monkeypatch.setattr("exportd.events.wakeup.RECONNECT_SECONDS", 60.0)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: not listeners(), what="the LISTEN connection to be gone")
    other = make_runtime(database_url=pg_url)  # not this process's store: no local poke
    job = other.store.enqueue(NewJob(owner="a", exporter="synthetic", params={"rows": 10}))
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, timeout=10)
    assert done.status == Status.COMPLETED
    assert listeners() == []  # it was the poll, not a new listener, that found the job


def test_sqlite_worker_in_another_process_wakes_without_polling_delay(
    make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    """On SQLite, a change committed by another connection wakes an idle worker long
    before its (here very long) poll interval would."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's data_version watch")
    runtime = make_runtime(poll_interval=60)
    runtime.start_worker(concurrency=1)
    other = make_runtime()  # a separate store object: its commits are not local pokes
    job = other.store.enqueue(NewJob(owner="a", exporter="synthetic", params={"rows": 10}))
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, timeout=10)
    assert done.status == Status.COMPLETED
