"""The artifact lifecycle on SQLite and PostgreSQL: a default TTL and `expires_at`, expiry
(410 at once, files gone after the sweep), storage quotas (refused at creation, failed
when crossed while writing, exact under concurrency), usage, pruning of old jobs,
thinning of progress events, and rows whose files went missing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from test_api import assert_problem, create, wait_done

from conftest import LiveServer, wait_for
from exportd.errors import QuotaExceeded
from exportd.jobs import Artifact, Claim, ErrorInfo, NewJob, Progress, utcnow
from exportd.store import SqlJobStore
from exportd.store.schema import artifacts, jobs
from exportd.worker.sweeper import Sweeper

Start = Callable[..., LiveServer]
DAY = 86400


def sweeper(server: LiveServer, **kw: Any) -> Sweeper:
    runtime = server.runtime
    values: dict[str, Any] = dict(holder="test", grace_seconds=0, interval_seconds=300)
    values.update(kw)
    return Sweeper(runtime.store, runtime.storage, **values)


def shift(store: SqlJobStore, job_id: str, **columns: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**columns))


def stored_sum(store: SqlJobStore, owner: str) -> tuple[int, int]:
    """The owner's artifact bytes and count, summed from the artifact rows."""
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(artifacts.c.size), 0), sa.func.count())
            .select_from(artifacts.join(jobs, jobs.c.id == artifacts.c.job_id))
            .where(jobs.c.owner == owner)
        ).one()
    return int(row[0]), int(row[1])


def test_every_completed_export_expires_by_default(live_server: Start) -> None:
    """Without `ttl_seconds`, files expire after EXPORTD_ARTIFACT_TTL; with it, after the
    job's own; `expires_at` says when."""
    server = live_server(artifact_ttl="2d")
    client = server.client(server.token("alice"))
    default = wait_done(client, create(client)["id"])
    own = wait_done(client, create(client, {"exporter": "synthetic", "ttl_seconds": 3600})["id"])
    for job, ttl in ((default, 2 * DAY), (own, 3600)):
        stored = server.runtime.store.get(job["id"])
        assert stored.expires_at is not None and stored.finished_at is not None
        assert abs((stored.expires_at - stored.finished_at).total_seconds() - ttl) < 5
        assert job["expires_at"] is not None


def test_expired_files_are_gone_and_downloads_answer_410(live_server: Start) -> None:
    """Once `expires_at` passes, downloads are 410 at once; the sweep then removes the files
    and rows (an `expired` event), and takes them off the owner's usage; other exports
    are kept."""
    server = live_server()
    client = server.client(server.token("alice"))
    short = wait_done(client, create(client, {"exporter": "synthetic", "ttl_seconds": 60})["id"])
    kept = wait_done(client, create(client)["id"])
    store, storage = server.runtime.store, server.runtime.storage
    link = client.get(f"/v1/exports/{short['id']}/download")
    assert link.status_code == 307
    shift(store, short["id"], expires_at=utcnow() - timedelta(seconds=1))
    assert_problem(client.get(f"/v1/exports/{short['id']}/download"), 410, "expired")
    assert_problem(server.client(None).get(link.headers["location"]), 410, "expired")
    report = sweeper(server).sweep(force=True)
    assert report.expired == 1
    assert client.get(f"/v1/exports/{short['id']}").json()["artifacts"] == []
    assert list(storage.keys()) == [store.get(kept["id"]).artifacts[0].storage_key]
    assert [e.type for e in store.events_after(0, job_id=short["id"])][-1] == "expired"
    usage = client.get("/v1/usage").json()
    assert (usage["bytes_stored"], usage["artifacts"]) == stored_sum(store, "alice")
    assert usage["artifacts"] == 1


def test_a_job_crossing_the_quota_fails_and_leaves_nothing(live_server: Start) -> None:
    """With a 60 kB quota, a first export of about 40 kB completes, a second one (which
    would cross the quota) fails permanently with `storage_quota_exceeded` and leaves no
    file; once the owner is over an admin's lower quota, creation is refused with 422;
    resetting the quota to the default lets it create again."""
    server = live_server(owner_storage_quota="60kB")
    client = server.client(server.token("bea"))
    admin = server.client(server.admin_token)
    body = {"exporter": "synthetic", "params": {"rows": 200}}
    first = wait_done(client, create(client, body)["id"])
    assert first["status"] == "completed"
    size = first["artifacts"][0]["size"]
    assert 30_000 < size < 60_000
    second = wait_done(client, create(client, body)["id"])
    assert second["status"] == "failed"
    assert second["error"]["code"] == "storage_quota_exceeded"
    assert second["error"]["retryable"] is False
    store = server.runtime.store
    assert [a.storage_key for a in store.get(first["id"]).artifacts] == list(
        server.runtime.storage.keys()
    )
    assert client.get("/v1/usage").json()["bytes_stored"] == size
    lowered = admin.put("/v1/owners/bea/quota", json={"storage_quota_bytes": 1000})
    assert lowered.status_code == 200
    assert (lowered.json()["quota_bytes"], lowered.json()["quota_is_default"]) == (1000, False)
    refused = client.post("/v1/exports", json=body)
    assert_problem(refused, 422, "storage_quota_exceeded")
    assert store.count_by_status() == {"completed": 1, "failed": 1}
    assert admin.put("/v1/owners/bea/quota", json={"storage_quota_bytes": None}).status_code == 200
    assert client.post("/v1/exports", json={"exporter": "synthetic"}).status_code == 202


def test_usage_is_the_callers_own_unless_admin(live_server: Start) -> None:
    """An owner reads its own usage (jobs by status, downloads counted); another owner's is
    403; an admin reads anyone's and only an admin sets quotas."""
    server = live_server()
    client = server.client(server.token("cid"))
    job = wait_done(client, create(client)["id"])
    link = client.get(f"/v1/exports/{job['id']}/download").headers["location"]
    assert server.client(None).get(link).status_code == 200
    usage = wait_for(lambda: (u := client.get("/v1/usage").json())["downloads"] and u)
    assert usage["owner"] == "cid"
    assert usage["jobs"] == {"completed": 1}
    assert usage["downloads"] == 1
    assert usage["quota_is_default"] is True
    assert_problem(client.get("/v1/usage", params={"owner": "dee"}), 403, "forbidden")
    admin = server.client(server.admin_token)
    assert admin.get("/v1/usage", params={"owner": "cid"}).json()["artifacts"] == 1
    quota = client.put("/v1/owners/cid/quota", json={"storage_quota_bytes": 5})
    assert_problem(quota, 403, "forbidden")


def claimed(store: SqlJobStore, owner: str) -> Claim:
    store.enqueue(NewJob(owner=owner, exporter="synthetic", params={"rows": 1}))
    claim = store.claim("w", lease_seconds=60, owner_cap=10)
    assert claim is not None
    return claim


def artifact(claim: Claim, size: int) -> Artifact:
    key = f"{claim.job.owner}/{claim.job.id}/{claim.token}/f.csv"
    return Artifact(claim.job.id, "f.csv", key, size, "0" * 64, "text/csv")


def test_concurrent_completions_never_overshoot_a_quota(store: SqlJobStore) -> None:
    """Eight completions of 60 bytes at once against a 250-byte quota: exactly four land,
    four are refused, and the usage row equals the sum of the artifact rows."""
    claims = [claimed(store, "eve") for _ in range(8)]
    barrier = threading.Barrier(len(claims))
    results: list[str] = []

    def finish(claim: Claim) -> None:
        barrier.wait()
        try:
            store.complete(claim, [artifact(claim, 60)], Progress(1, 1), quota=250)
        except QuotaExceeded:
            results.append("refused")
        else:
            results.append("completed")

    threads = [threading.Thread(target=finish, args=(claim,)) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["completed"] * 4 + ["refused"] * 4
    assert store.stored_bytes("eve") == (240, None)
    assert stored_sum(store, "eve") == (240, 4)


def test_old_jobs_are_pruned_with_their_events_and_files(live_server: Start) -> None:
    """A job finished longer ago than EXPORTD_JOB_RETENTION is deleted with its events,
    artifact rows and files, and leaves the owner's usage; a recent one stays."""
    server = live_server(job_retention="30d")
    client = server.client(server.token("fay"))
    old = wait_done(client, create(client)["id"])
    recent = wait_done(client, create(client)["id"])
    store = server.runtime.store
    shift(store, old["id"], finished_at=utcnow() - timedelta(days=31))
    report = sweeper(server).sweep(force=True)
    assert report.pruned == 1
    assert client.get(f"/v1/exports/{old['id']}").status_code == 404
    assert store.events_after(0, job_id=old["id"]) == []
    assert list(server.runtime.storage.keys()) == [store.get(recent["id"]).artifacts[0].storage_key]
    assert store.stored_bytes("fay")[0] == stored_sum(store, "fay")[0]


def test_progress_events_of_long_finished_jobs_are_thinned(live_server: Start) -> None:
    """Progress events of a job finished more than EXPORTD_PROGRESS_RETENTION ago go; its
    transitions stay; a second sweep finds nothing more to do."""
    server = live_server(progress_interval=0.01)
    client = server.client(server.token("gus"))
    job = wait_done(
        client, create(client, {"exporter": "slow", "params": {"batches": 5, "delay": 0.05}})["id"]
    )
    store = server.runtime.store
    before = [e.type for e in store.events_after(0, job_id=job["id"])]
    assert "progress" in before
    shift(store, job["id"], finished_at=utcnow() - timedelta(days=2))
    assert sweeper(server).sweep(force=True).thinned == before.count("progress")
    after = [e.type for e in store.events_after(0, job_id=job["id"])]
    assert after == [t for t in before if t != "progress"]
    assert sweeper(server).sweep(force=True).thinned == 0


def test_rows_whose_files_went_missing_are_dropped(live_server: Start) -> None:
    """A file removed behind exportd's back: the sweep drops its row (a `files_missing`
    event, usage corrected), and the download answers 410 instead of failing."""
    server = live_server()
    client = server.client(server.token("hal"))
    job = wait_done(client, create(client)["id"])
    store, storage = server.runtime.store, server.runtime.storage
    (art,) = store.get(job["id"]).artifacts
    storage.delete(art.storage_key)
    with store.engine.begin() as conn:
        conn.execute(
            artifacts.update()
            .where(artifacts.c.job_id == job["id"])
            .values(created_at=utcnow() - timedelta(hours=1))
        )
    report = sweeper(server, grace_seconds=60).sweep(force=True)
    assert report.missing == 1
    assert_problem(client.get(f"/v1/exports/{job['id']}/download"), 410, "expired")
    assert [e.type for e in store.events_after(0, job_id=job["id"])][-1] == "files_missing"
    assert store.stored_bytes("hal") == (0, None)


def test_usage_follows_deletes(live_server: Start) -> None:
    """Deleting an export takes its files off the owner's usage."""
    server = live_server()
    client = server.client(server.token("ivy"))
    job = wait_done(client, create(client)["id"])
    assert client.get("/v1/usage").json()["artifacts"] == 1
    assert client.delete(f"/v1/exports/{job['id']}").status_code == 204
    usage = client.get("/v1/usage").json()
    assert (usage["bytes_stored"], usage["artifacts"]) == (0, 0)


def test_recorded_uploads_of_dead_claims_are_listed(store: SqlJobStore) -> None:
    """The upload log keeps each upload's parts in order; an upload is listed for abort
    only once its claim is no longer running, and forgotten when it ends."""
    live = claimed(store, "jo")
    store.upload_started("k/live", live.token, "u-1")
    store.upload_part("k/live", 1, "e1", 5 << 20)
    store.upload_part("k/live", 2, "e2", 100)
    store.upload_started("k/dead", "gone-claim", "u-2")
    (dead,) = store.uploads_of_dead_claims()
    assert (dead.storage_key, dead.upload_id, dead.parts) == ("k/dead", "u-2", [])
    store.fail(live, ErrorInfo("x", "y", False), retry_at=None)
    listed = {u.storage_key: u for u in store.uploads_of_dead_claims()}
    assert listed["k/live"].parts == [[1, "e1", 5 << 20], [2, "e2", 100]]
    store.upload_ended("k/live")
    store.upload_ended("k/dead")
    assert store.uploads_of_dead_claims() == []
