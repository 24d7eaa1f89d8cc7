"""A job's history, the audit list and the stats, on SQLite and PostgreSQL, through a real
server: events in order with who caused each, paginated; tombstones of deletions, newest
first; stats per owner with p50/p95 run times computed alike by both dialects over a
bounded window, read through the partial indexes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from test_api import assert_problem, create, wait_done

from conftest import LiveServer, wait_for
from exportd.jobs import Artifact, ErrorInfo, NewJob, Progress, utcnow
from exportd.store import SqlJobStore
from exportd.store.schema import jobs
from exportd.store.stats import (
    finished_counts_query,
    queued_count_query,
    recent_completed_query,
)

Start = Callable[..., LiveServer]
FAILING = {"exporter": "flaky", "params": {"permanent": True, "code": "nope"}}


def pages(client: httpx.Client, path: str, cursor: str, **params: Any) -> list[dict[str, Any]]:
    """Every item, following `next_cursor` (passed back as `cursor`)."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(path, params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if body["next_cursor"] is None:
            return items
        params[cursor] = body["next_cursor"]


def test_history_lists_events_in_order_with_their_actors(live_server: Start) -> None:
    """A job that failed, was retried by its owner and failed again: created and retried
    name the owner's token, the worker's steps say `worker`; pages of two give the same
    events as one page; another owner gets 404, an admin the history."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = create(client, FAILING)
    wait_done(client, job["id"])
    assert client.post(f"/v1/exports/{job['id']}/retry").status_code == 200
    path = f"/v1/exports/{job['id']}/history"

    def settled() -> list[dict[str, Any]] | None:
        found = client.get(path, params={"limit": 500}).json()["items"]
        return found if [e["type"] for e in found].count("failed") == 2 else None

    everything = wait_for(settled, what="the second failure")
    assert [(e["type"], e["status"]) for e in everything] == [
        ("created", "queued"),
        ("started", "running"),
        ("failed", "failed"),
        ("retried", "queued"),
        ("started", "running"),
        ("failed", "failed"),
    ]
    actors = [e["actor"] for e in everything]
    assert actors[0].startswith("alice/") and actors[3] == actors[0]
    assert {actors[i] for i in (1, 2, 4, 5)} == {"worker"}
    assert everything[2]["data"]["error"]["code"] == "nope"
    assert pages(client, path, "after", limit=2) == everything
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    later = client.get(path, params={"after": ids[3]}).json()
    assert [e["id"] for e in later["items"]] == ids[4:] and later["next_cursor"] is None
    assert_problem(server.client(server.token("bob")).get(path), 404, "not_found")
    admin = server.client(server.admin_token).get(path, params={"limit": 500})
    assert [e["id"] for e in admin.json()["items"]] == ids


def test_the_audit_lists_deletions_newest_first(live_server: Start) -> None:
    """Deleted jobs leave who/what/when, newest first, paginated; an owner sees its own
    (another owner's is 403), an admin everyone's or one owner's."""
    server = live_server(workers=False)
    alice = server.client(server.token("alice"))
    bob = server.client(server.token("bob"))
    mine = [create(alice)["id"] for _ in range(3)]
    theirs = create(bob)["id"]
    for job_id in mine:
        assert alice.delete(f"/v1/exports/{job_id}").status_code == 204
    assert bob.delete(f"/v1/exports/{theirs}").status_code == 204
    entries = pages(alice, "/v1/audit", "before", limit=2)
    assert [e["job_id"] for e in entries] == mine[::-1]
    assert {e["action"] for e in entries} == {"deleted"}
    assert all(e["actor"].startswith("alice/") and e["owner"] == "alice" for e in entries)
    assert entries[0]["data"]["exporter"] == "synthetic"
    assert entries[0]["at"] >= entries[-1]["at"]
    assert_problem(alice.get("/v1/audit", params={"owner": "bob"}), 403, "forbidden")
    admin = server.client(server.admin_token)
    assert len(admin.get("/v1/audit").json()["items"]) == 4
    only_bob = admin.get("/v1/audit", params={"owner": "bob"}).json()["items"]
    assert [e["job_id"] for e in only_bob] == [theirs]


def finish(
    store: SqlJobStore,
    owner: str,
    *,
    exporter: str = "synthetic",
    fmt: str = "csv",
    seconds: float,
    rows: int,
    ago: timedelta = timedelta(minutes=5),
) -> str:
    """A job completed `ago`, having run `seconds` and written `rows`."""
    store.enqueue(NewJob(owner=owner, exporter=exporter, params={}, format=fmt))
    claim = store.claim("w", lease_seconds=60, owner_cap=100)
    assert claim is not None
    key = f"{owner}/{claim.job.id}/{claim.token}/f"
    produced = [Artifact(claim.job.id, "f", key, 10, "a" * 64, "text/csv")]
    store.complete(claim, produced, Progress(rows, rows))
    end = utcnow() - ago
    with store.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == claim.job.id)
            .values(finished_at=end, started_at=end - timedelta(seconds=seconds))
        )
    return claim.job.id


def fill_stats(store: SqlJobStore) -> None:
    """ann: 20 synthetic/csv jobs of 1..20 s and 100 rows a second, 2 slow/parquet of 4
    and 8 s, one failed, one cancelled, one completed 3 days ago; bob: one of 100 s and
    one queued."""
    for seconds in range(1, 21):
        finish(store, "ann", seconds=seconds, rows=100 * seconds)
    for seconds in (4, 8):
        finish(store, "ann", exporter="slow", fmt="parquet", seconds=seconds, rows=10)
    finish(store, "ann", seconds=50, rows=1, ago=timedelta(days=3))
    store.enqueue(NewJob(owner="ann", exporter="flaky", params={}))
    claim = store.claim("w", lease_seconds=60, owner_cap=100)
    assert claim is not None
    store.fail(claim, ErrorInfo("nope", "no", False), retry_at=None)
    store.request_cancel(store.enqueue(NewJob(owner="ann", exporter="s", params={})).id)
    finish(store, "bob", seconds=100, rows=1000)
    store.enqueue(NewJob(owner="bob", exporter="synthetic", params={}))


def test_stats_per_owner_and_kind(live_server: Start) -> None:
    """Both dialects give the same p50/p95 (PostgreSQL's `percentile_cont`, SQLite's in
    Python), rows per second, finished counts of 24 h, stored bytes; a 7-day window
    takes in the older job; an admin gets everyone's or one owner's, an owner only its
    own."""
    server = live_server(workers=False)
    fill_stats(server.runtime.store)
    ann = server.client(server.token("ann"))
    stats = ann.get("/v1/stats").json()
    assert stats["owner"] == "ann"
    assert stats["jobs"] == {"queued": 0, "running": 0}
    assert stats["finished_24h"] == {"completed": 22, "failed": 1, "cancelled": 1}
    assert stats["sampled"] == 22
    kinds = {(k["exporter"], k["format"]): k for k in stats["by_kind"]}
    csv, parquet = kinds[("synthetic", "csv")], kinds[("slow", "parquet")]
    assert csv["completed"] == 20
    assert csv["p50_seconds"] == pytest.approx(10.5)
    assert csv["p95_seconds"] == pytest.approx(19.05)
    assert csv["rows"] == 21_000 and csv["rows_per_second"] == pytest.approx(100.0)
    assert (parquet["p50_seconds"], parquet["p95_seconds"]) == pytest.approx((6.0, 7.8))
    assert stats["storage"] == {"bytes_stored": 230, "artifacts": 23, "downloads": 0}
    week = ann.get("/v1/stats", params={"window": "7d"}).json()
    assert week["sampled"] == 23
    assert week["finished_24h"] == stats["finished_24h"]
    assert_problem(ann.get("/v1/stats", params={"owner": "bob"}), 403, "forbidden")
    assert_problem(ann.get("/v1/stats", params={"window": "30d"}), 422, "validation_error")
    admin = server.client(server.admin_token)
    everyone = admin.get("/v1/stats").json()
    assert everyone["owner"] is None
    assert everyone["jobs"]["queued"] == 1 and everyone["finished_24h"]["completed"] == 23
    both = next(k for k in everyone["by_kind"] if k["exporter"] == "synthetic")
    assert both["completed"] == 21 and both["p50_seconds"] == pytest.approx(11.0)
    bob = admin.get("/v1/stats", params={"owner": "bob"}).json()
    assert [k["p95_seconds"] for k in bob["by_kind"]] == [pytest.approx(100.0)]


def explain(store: SqlJobStore, query: sa.Select[Any]) -> str:
    """The database's plan for `query` (PostgreSQL with sequential scans priced out, so
    an empty table still shows which index it can use)."""
    compiled = query.compile(dialect=store.engine.dialect)
    params = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in compiled.params.items()
    }
    with store.engine.connect() as conn:
        if store.dialect_name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", params).all()
        else:
            ordered = tuple(params[name] for name in compiled.positiontup or ())
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ordered).all()
        conn.rollback()
    return "\n".join(" ".join(map(str, row)) for row in rows)


def test_stats_read_finished_jobs_through_their_partial_index(store: SqlJobStore) -> None:
    """The window's counts and the completed jobs sampled for percentiles are read
    through `ix_exportd_jobs_finished`, never by scanning the jobs table."""
    since = utcnow() - timedelta(days=1)
    for query in (
        finished_counts_query(since, None),
        recent_completed_query(since, None, jobs.c.exporter, jobs.c.started_at),
    ):
        assert "ix_exportd_jobs_finished" in explain(store, query)


def test_an_owners_queued_jobs_are_counted_over_the_queue(store: SqlJobStore) -> None:
    """Counting one owner's queued jobs reads the queue's partial index, not the owner's
    whole history, and counts right."""
    assert "ix_exportd_jobs_queue" in explain(store, queued_count_query("ann"))
    for owner in ("ann", "ann", "bob"):
        store.enqueue(NewJob(owner=owner, exporter="synthetic", params={}))
    with store.engine.connect() as conn:
        counted = [conn.execute(queued_count_query(o)).scalar() for o in ("ann", "bob", None)]
    assert counted == [2, 1, 3]
