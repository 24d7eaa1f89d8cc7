"""Checks that must hold under concurrency, on SQLite and PostgreSQL: the active-job limit
under parallel creation (single and batch), cancel racing a claim, concurrent retries,
cancelling a finished job, and the idempotency window."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from conftest import LiveServer, wait_for
from exportd.errors import ActiveLimitReached, InvalidTransition
from exportd.jobs import TERMINAL, Artifact, Claim, ErrorInfo, NewJob, Progress, Status, utcnow
from exportd.store import SqlJobStore
from exportd.store.schema import jobs

Start = Callable[..., LiveServer]
BODY = {"exporter": "synthetic", "params": {"rows": 10}}


def new(owner: str = "alice", **kw: Any) -> NewJob:
    return NewJob(owner=owner, exporter="synthetic", params={"rows": 1}, **kw)


def in_parallel(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run `call(i)` for i in range(count) on `count` threads released together."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_sixty_parallel_creates_respect_a_limit_of_twenty(live_server: Start) -> None:
    """60 requests at once for an owner allowed 20 active jobs: exactly 20 are accepted,
    40 refused with 429, and 20 jobs are stored."""
    server = live_server(workers=False, max_active_per_owner=20)
    token = server.token("alice")
    clients = [server.client(token) for _ in range(60)]
    codes = in_parallel(60, lambda i: clients[i].post("/v1/exports", json=BODY).status_code)
    assert Counter(codes) == {202: 20, 429: 40}
    assert server.runtime.store.count_active("alice") == 20


def test_parallel_batches_respect_the_limit_all_or_nothing(live_server: Start) -> None:
    """30 batches of 3 at once against a limit of 20: exactly 6 batches (18 jobs) are
    stored, every other batch is refused whole."""
    server = live_server(workers=False, max_active_per_owner=20)
    token = server.token("bob")
    clients = [server.client(token) for _ in range(30)]
    batch = {"exports": [BODY, BODY, BODY]}
    codes = in_parallel(30, lambda i: clients[i].post("/v1/batches", json=batch).status_code)
    assert Counter(codes) == {201: 6, 429: 24}
    assert server.runtime.store.count_by_status() == {"queued": 18}


def test_idempotent_replays_past_the_window_create_a_new_job(live_server: Start) -> None:
    """A key is honoured for 24 h: a replay inside the window returns the same job (200);
    once the first use is older than the window, the same key creates a new job (202)."""
    server = live_server(workers=False)
    client = server.client(server.token("carol"))
    headers = {"Idempotency-Key": "k-1"}
    first = client.post("/v1/exports", json=BODY, headers=headers)
    again = client.post("/v1/exports", json=BODY, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    store = server.runtime.store
    found = store.find_idempotent("carol", "k-1", window=timedelta(hours=24))
    assert found is not None
    with store.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == first.json()["id"])
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    assert store.find_idempotent("carol", "k-1", window=timedelta(hours=24)) is None
    later = client.post("/v1/exports", json=BODY, headers=headers)
    assert later.status_code == 202
    assert later.json()["id"] != first.json()["id"]


def events_by_job(store: SqlJobStore) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in store.events_after(0, limit=1_000_000):
        found.setdefault(event.job_id, []).append(event.type)
    return found


def artifact(claim: Claim) -> Artifact:
    key = f"alice/{claim.job.id}/{claim.token}/f.csv"
    return Artifact(claim.job.id, "f.csv", key, 1, "0" * 64, "text/csv")


class Lockstep:
    """Two sides that may each get at most `window` steps ahead of the other, so that
    neither finishes its whole half before the other starts (on SQLite one thread can
    otherwise win every race and the meeting in the middle never happens). A side that
    waits longer than `patience` goes on anyway: the other may have nothing left to do."""

    def __init__(self, window: int, patience: float = 0.5) -> None:
        self.window, self.patience = window, patience
        self.steps = [0, 0]
        self.changed = threading.Condition()

    def step(self, side: int, count: int = 1) -> None:
        with self.changed:
            self.changed.wait_for(
                lambda: self.steps[side] - self.steps[1 - side] < self.window, self.patience
            )
            self.steps[side] += count
            self.changed.notify_all()


def test_cancel_racing_claims_ends_in_one_honest_outcome(store: SqlJobStore) -> None:
    """300 jobs; two claimers run them (checking the cancel flag as a runner does) while
    a third thread cancels every job, newest first, the two sides kept in step. Each job
    ends once: cancelled without ever starting, or started and then cancelled (after
    `cancel_requested`), or completed because the cancel came too late (then no
    `cancelled` event at all)."""
    created = [store.enqueue(new(f"o{i % 6}")).id for i in range(300)]
    done = threading.Event()
    pace = Lockstep(window=12)

    def claimer(name: str) -> None:
        while not done.is_set():
            claims = store.claim_many(name, 4, lease_seconds=30, owner_cap=10)
            pace.step(0, max(len(claims), 1))
            for claim in claims:
                if store.heartbeat(claim, lease_seconds=30):
                    store.mark_cancelled(claim)
                else:
                    store.complete(claim, [artifact(claim)], Progress(1, 1))

    def canceller() -> None:
        # Newest first, while the claimers take the oldest first: the two meet in the
        # middle, so some cancels find jobs queued, some running, some finished.
        for job_id in reversed(created):
            pace.step(1)
            store.request_cancel(job_id)

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    canceller()
    wait_for(
        lambda: not {"queued", "running"} & set(store.count_by_status()),
        timeout=120,
        what="every job to end",
    )
    done.set()
    for thread in threads:
        thread.join()
    seen = events_by_job(store)
    outcomes: Counter[str] = Counter()
    for job_id in created:
        job = store.get(job_id)
        kinds = seen[job_id]
        ends = [k for k in kinds if k in ("completed", "cancelled", "failed")]
        assert len(ends) == 1, kinds
        assert job.status in TERMINAL and job.status == ends[0]
        if job.status == Status.CANCELLED and "started" in kinds:
            assert kinds.index("cancel_requested") < kinds.index("cancelled"), kinds
            outcomes["stopped"] += 1
        elif job.status == Status.CANCELLED:
            assert kinds == ["created", "cancelled"]
            outcomes["never ran"] += 1
        else:
            assert job.status == Status.COMPLETED
            outcomes["too late"] += 1
    assert outcomes["never ran"] > 0
    assert outcomes["stopped"] + outcomes["too late"] > 0
    assert sum(outcomes.values()) == 300


def test_cancelling_a_finished_job_changes_nothing(store: SqlJobStore) -> None:
    """A cancel after completion neither flags the job nor writes an event."""
    store.enqueue(new())
    claim = store.claim("w", lease_seconds=30, owner_cap=3)
    assert claim is not None
    store.complete(claim, [artifact(claim)], Progress(1, 1))
    before = events_by_job(store)[claim.job.id]
    job = store.request_cancel(claim.job.id)
    assert (job.status, job.cancel_requested) == (Status.COMPLETED, False)
    assert events_by_job(store)[claim.job.id] == before


def test_concurrent_retries_requeue_a_job_once(store: SqlJobStore) -> None:
    """Eight retries of one failed job at once: one succeeds, the others are refused,
    and one `retried` event is written."""
    store.enqueue(new(max_attempts=1))
    claim = store.claim("w", lease_seconds=30, owner_cap=3)
    assert claim is not None
    store.fail(claim, ErrorInfo("boom", "broke", False), retry_at=None)

    def retry(_: int) -> str:
        try:
            store.retry(claim.job.id)
        except InvalidTransition:
            return "refused"
        return "retried"

    results = in_parallel(8, retry)
    assert Counter(results) == {"retried": 1, "refused": 7}
    assert events_by_job(store)[claim.job.id].count("retried") == 1
    assert store.get(claim.job.id).status == Status.QUEUED


def test_a_retry_respects_the_active_limit(store: SqlJobStore) -> None:
    """A retry that would take the owner past its active limit is refused and the job
    stays failed."""
    limit = 3
    store.enqueue(new(max_attempts=1))
    claim = store.claim("w", lease_seconds=30, owner_cap=3)
    assert claim is not None
    store.fail(claim, ErrorInfo("boom", "broke", False), retry_at=None)
    for _ in range(limit):
        store.enqueue(new())
    with pytest.raises(ActiveLimitReached):
        store.retry(claim.job.id, active_limit=limit)
    assert store.get(claim.job.id).status == Status.FAILED
