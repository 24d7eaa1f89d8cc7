"""The job store's batched worker paths against real SQLite and PostgreSQL: several claims
in one transaction, completions that commit on their own, and one heartbeat for many
leases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from exportd.errors import LeaseLost
from exportd.jobs import Artifact, Claim, NewJob, Progress, Status, utcnow
from exportd.store import SqlJobStore


def new(owner: str = "alice", **kw: object) -> NewJob:
    return NewJob(owner=owner, exporter="synthetic", params={"rows": 1}, **kw)  # type: ignore[arg-type]


def claim_many(store: SqlJobStore, limit: int, cap: int = 3, worker: str = "w") -> list[Claim]:
    return store.claim_many(worker, limit, lease_seconds=30, owner_cap=cap)


def artifact(claim: Claim) -> Artifact:
    return Artifact(claim.job.id, "f.csv", f"jobs/{claim.job.id}/1/f.csv", 3, "0" * 64, "text/csv")


def test_claim_many_takes_jobs_in_claim_order(store: SqlJobStore) -> None:
    """A batch claim returns the jobs that single claims would, in the same order."""
    now = utcnow()
    old = store.enqueue(new(run_after=now - timedelta(seconds=5)))
    earlier = store.enqueue(new("bob", run_after=now - timedelta(seconds=10)))
    urgent = store.enqueue(new("carol", priority=5))
    store.enqueue(new(run_after=now + timedelta(hours=1)))
    taken = claim_many(store, 10, cap=10)
    assert [c.job.id for c in taken] == [urgent.id, earlier.id, old.id]
    assert all(c.job.status == Status.RUNNING and c.job.attempt == 1 for c in taken)
    started = [e.job_id for e in store.events_after(0) if e.type == "started"]
    assert sorted(started) == sorted(c.job.id for c in taken)


def test_claim_many_keeps_the_owner_cap_exactly(store: SqlJobStore) -> None:
    """With a cap of 2 and one job already running, a batch takes one more of that owner."""
    for _ in range(4):
        store.enqueue(new("big"))
    store.enqueue(new("small"))
    assert len(claim_many(store, 1, cap=2)) == 1
    owners = [c.job.owner for c in claim_many(store, 10, cap=2)]
    assert sorted(owners) == ["big", "small"]
    assert claim_many(store, 10, cap=2) == []
    assert store.count_by_status() == {"running": 3, "queued": 2}


def test_a_completion_commits_on_its_own_before_the_next_claim(store: SqlJobStore) -> None:
    """A completion is its own transaction: the job is completed, with its artifact and
    event, before (and whatever happens to) the claim of the next job."""
    first = store.enqueue(new())
    second = store.enqueue(new())
    [running] = claim_many(store, 1)
    job = store.complete(running, [artifact(running)], Progress(1, 1))
    assert (job.id, job.status, len(job.artifacts)) == (first.id, Status.COMPLETED, 1)
    assert store.get(first.id).status == Status.COMPLETED
    [following] = claim_many(store, 1)
    assert (following.job.id, following.job.status) == (second.id, Status.RUNNING)
    assert store.get(first.id).artifacts[0].name == "f.csv"
    types = [(e.job_id, e.type) for e in store.events_after(0) if e.type != "created"]
    assert types == [(first.id, "started"), (first.id, "completed"), (second.id, "started")]


def test_a_fenced_off_completion_changes_nothing(store: SqlJobStore) -> None:
    """A completion that lost its lease raises LeaseLost and leaves job and queue as
    they were."""
    store.enqueue(new())
    waiting = store.enqueue(new())
    [running] = claim_many(store, 1)
    stale = Claim(running.job, "someone-else")
    with pytest.raises(LeaseLost):
        store.complete(stale, [artifact(running)], Progress(1, 1))
    assert store.get(waiting.id).status == Status.QUEUED
    assert store.get(running.job.id).status == Status.RUNNING
    assert store.get(running.job.id).artifacts == ()


def test_heartbeat_many_renews_held_leases_and_reports_cancels(store: SqlJobStore) -> None:
    """One heartbeat renews every held lease, flags cancel requests and omits lost jobs."""
    for _ in range(3):
        store.enqueue(new())
    first, second, third = claim_many(store, 3)
    store.request_cancel(second.job.id)
    lost = Claim(third.job, "someone-else")
    flags = store.heartbeat_many([first, second, lost], lease_seconds=120)
    assert flags == {first.job.id: False, second.job.id: True}
    renewed = store.get(first.job.id).lease_expires_at
    assert renewed is not None and renewed > utcnow() + timedelta(seconds=60)
    assert store.cancel_flags([first, second, lost]) == flags
