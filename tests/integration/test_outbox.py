"""The durable outbox, labels, actors and the audit list, on SQLite and PostgreSQL: every
terminal transition writes its messages in its own transaction (none when it rolls
back), labels are stored and filtered, events say who caused them, deletions leave a
tombstone, manual retries are bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from test_api import assert_problem, wait_done

from conftest import LiveServer
from exportd.errors import LeaseLost, QuotaExceeded, RetryLimitReached
from exportd.jobs import Artifact, Claim, ErrorInfo, NewJob, Progress, utcnow
from exportd.store import SqlJobStore
from exportd.store.schema import outbox, webhooks

Start = Callable[..., LiveServer]


def hook(store: SqlJobStore, owner: str, events: list[str], *, disabled: bool = False) -> str:
    hook_id = f"wh_{owner}_{len(events)}_{disabled}"
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            webhooks.insert().values(
                id=hook_id,
                owner=owner,
                url=f"https://example.test/{hook_id}",
                events=events,
                secret="whsec_x",
                disabled_at=now if disabled else None,
                created_at=now,
                updated_at=now,
            )
        )
    return hook_id


def messages(store: SqlJobStore, job_id: str | None = None) -> list[Any]:
    query = sa.select(outbox).order_by(outbox.c.created_at, outbox.c.target)
    if job_id is not None:
        query = query.where(outbox.c.job_id == job_id)
    with store.engine.connect() as conn:
        return list(conn.execute(query).all())


def claimed(store: SqlJobStore, owner: str = "ann", **kw: Any) -> Claim:
    store.enqueue(NewJob(owner=owner, exporter="synthetic", params={"rows": 1}, **kw))
    claim = store.claim("w", lease_seconds=60, owner_cap=10)
    assert claim is not None
    return claim


def artifact(claim: Claim, size: int = 10) -> Artifact:
    key = f"{claim.job.owner}/{claim.job.id}/{claim.token}/f.csv"
    return Artifact(claim.job.id, "f.csv", key, size, "a" * 64, "text/csv")


def test_a_completion_writes_one_message_per_subscribed_target(store: SqlJobStore) -> None:
    """Completed: a message for each enabled webhook that wants `export.completed` (an
    empty list means every event), one for the job's notify URL and one per address;
    none for a disabled hook or one that wants only failures, none for other owners."""
    wants_all = hook(store, "ann", [])
    wants_done = hook(store, "ann", ["export.completed", "export.failed"])
    hook(store, "ann", ["export.failed"])
    hook(store, "ann", [], disabled=True)
    hook(store, "bob", [])
    notify = {"webhook_url": "https://one.test/off", "email": ["a@x.test", "b@x.test"]}
    claim = claimed(store, labels={"document_id": "123"}, notify=notify)
    store.complete(claim, [artifact(claim, 42)], Progress(7, 7))
    found = messages(store, claim.job.id)
    targets = sorted((m.channel, m.webhook_id or m.target) for m in found)
    assert targets == sorted(
        [
            ("webhook", wants_all),
            ("webhook", wants_done),
            ("webhook", "https://one.test/off"),
            ("email", "a@x.test"),
            ("email", "b@x.test"),
        ]
    )
    assert {m.event_type for m in found} == {"export.completed"}
    assert len({m.id for m in found}) == 5
    data = found[0].payload["data"]
    assert (data["status"], data["rows"], data["size"], data["sha256"]) == (
        "completed",
        7,
        42,
        "a" * 64,
    )
    assert data["labels"] == {"document_id": "123"}


def test_a_completion_that_rolls_back_writes_no_message(store: SqlJobStore) -> None:
    """A fenced-off completion and one refused by the quota leave no message behind."""
    hook(store, "ann", [])
    claim = claimed(store)
    with pytest.raises(LeaseLost):
        store.complete(Claim(claim.job, "stolen"), [artifact(claim)], Progress(1, 1))
    with pytest.raises(QuotaExceeded):
        store.complete(claim, [artifact(claim, 100)], Progress(1, 1), quota=50)
    assert messages(store) == []


@pytest.mark.parametrize("end", ["fail", "retry", "cancel_running", "cancel_queued", "rescue"])
def test_each_terminal_transition_writes_its_message(store: SqlJobStore, end: str) -> None:
    """Failed, cancelled (queued or running) and rescued-to-failed jobs write their
    message in the transition's transaction; a failure that will be retried writes none."""
    hook(store, "ann", [])
    expected: list[str]
    if end == "cancel_queued":
        job = store.enqueue(NewJob(owner="ann", exporter="synthetic", params={}))
        store.request_cancel(job.id)
        job_id, expected = job.id, ["export.cancelled"]
    else:
        claim = claimed(store, max_attempts=1)
        job_id = claim.job.id
        if end == "fail":
            store.fail(claim, ErrorInfo("boom", "it broke", False), retry_at=None)
            expected = ["export.failed"]
        elif end == "retry":
            store.fail(claim, ErrorInfo("flaky", "later", True), retry_at=utcnow())
            expected = []
        elif end == "cancel_running":
            store.request_cancel(job_id)
            store.mark_cancelled(claim)
            expected = ["export.cancelled"]
        else:
            with store.engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE exportd_jobs SET lease_expires_at = :t WHERE id = :id"),
                    {"t": "2000-01-01 00:00:00", "id": job_id},
                )
            store.rescue_expired(lambda attempt: 0.0)
            expected = ["export.failed"]
    found = messages(store, job_id)
    assert [m.event_type for m in found] == expected
    if end in ("fail", "rescue"):
        error = found[0].payload["data"]["error"]
        assert error["code"] == ("boom" if end == "fail" else "worker_lost")


def test_labels_are_kept_and_filtered(store: SqlJobStore) -> None:
    """Jobs carry their labels; a filter by one or two labels finds exactly the jobs
    that have all of them, and only the owner's."""
    a = store.enqueue(NewJob(owner="ann", exporter="s", params={}, labels={"doc": "1", "st": "x"}))
    b = store.enqueue(NewJob(owner="ann", exporter="s", params={}, labels={"doc": "1"}))
    store.enqueue(NewJob(owner="ann", exporter="s", params={}, labels={"doc": "2"}))
    store.enqueue(NewJob(owner="bob", exporter="s", params={}, labels={"doc": "1"}))
    assert store.get(a.id).labels == {"doc": "1", "st": "x"}
    one = store.list_jobs("ann", labels=[("doc", "1")]).jobs
    assert [j.id for j in one] == [b.id, a.id]
    both = store.list_jobs("ann", labels=[("doc", "1"), ("st", "x")]).jobs
    assert [j.id for j in both] == [a.id]
    assert len(store.list_jobs(None, labels=[("doc", "1")]).jobs) == 3


def test_events_name_their_actor_and_deletions_leave_a_tombstone(store: SqlJobStore) -> None:
    """`created`, `cancelled` and `retried` carry the actor given; the worker's own events
    carry none; a deleted job leaves an audit entry with who, what and when."""
    job = store.enqueue(NewJob(owner="ann", exporter="synthetic", params={}, created_by="ann/ci"))
    store.request_cancel(job.id, actor="ann/web")
    store.retry(job.id, actor="root/admin")
    claim = store.claim("w", lease_seconds=60, owner_cap=3)
    assert claim is not None
    store.complete(claim, [artifact(claim)], Progress(1, 1))
    actors = [(e.type, e.actor) for e in store.history(job.id)]
    assert actors == [
        ("created", "ann/ci"),
        ("cancelled", "ann/web"),
        ("retried", "root/admin"),
        ("started", None),
        ("completed", None),
    ]
    store.delete(job.id, actor="ann/cleanup")
    (entry,) = store.audit_list("ann")
    assert (entry.job_id, entry.action, entry.actor) == (job.id, "deleted", "ann/cleanup")
    assert entry.data["files"] == ["f.csv"]
    assert store.audit_list("bob") == []


def test_manual_retries_are_bounded(store: SqlJobStore) -> None:
    """With a bound of 2, a job can be retried twice by hand; the third is refused."""
    claim = claimed(store, max_attempts=1)
    for round_ in range(3):
        store.fail(claim, ErrorInfo("x", "y", False), retry_at=None)
        if round_ == 2:
            with pytest.raises(RetryLimitReached):
                store.retry(claim.job.id, max_retries=2)
            break
        store.retry(claim.job.id, max_retries=2)
        again = store.claim("w", lease_seconds=60, owner_cap=10)
        assert again is not None
        claim = again
    assert store.get(claim.job.id).manual_retries == 2


def test_labels_notify_and_actors_through_the_api(live_server: Start) -> None:
    """Over HTTP: labels and notify are accepted, returned and filtered by `?label=`;
    bad labels are 422; the job names its creator; the retry bound is a 409."""
    server = live_server(max_manual_retries=0)
    client = server.client(server.token("cy"))
    body = {
        "exporter": "flaky",
        "params": {"permanent": True},
        "labels": {"document_id": "123", "stage": "final"},
        "notify": {"email": ["ops@example.test"]},
    }
    created = client.post("/v1/exports", json=body)
    assert created.status_code == 202, created.text
    job = wait_done(client, created.json()["id"])
    assert job["labels"] == {"document_id": "123", "stage": "final"}
    assert job["notify"]["email"] == ["ops@example.test"]
    assert job["created_by"].startswith("cy/")
    listed = client.get("/v1/exports", params={"label": "document_id:123"}).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    assert client.get("/v1/exports", params={"label": "document_id:9"}).json()["items"] == []
    bad = client.post("/v1/exports", json={**body, "labels": {"no spaces": "x"}})
    assert bad.status_code == 422
    assert_problem(client.post(f"/v1/exports/{job['id']}/retry"), 409, "retry_limit_reached")
    assert [m.event_type for m in messages(server.runtime.store, job["id"])] == ["export.failed"]
