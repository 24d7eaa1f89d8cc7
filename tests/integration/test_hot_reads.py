"""`GET /v1/exports/{id}`, the request clients poll, is answered without FastAPI's
routing once the caller's token is in the token cache: byte for byte what the route
answers, with the same headers and metrics; whatever it cannot answer (errors, other
owners' jobs, a busy SQLite file) the route answers as before. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from test_api import assert_problem

from conftest import LiveServer, wait_for
from exportd.api.hot import HotReads
from exportd.errors import JobNotFound, TransientStoreError
from exportd.jobs import NewJob
from exportd.observability import metrics
from exportd.store import SqliteJobStore, open_store

Start = Callable[..., LiveServer]
ROUTE = "/v1/exports/{job_id}"


def hot(server: LiveServer) -> HotReads:
    layer = server.server.config.app.middleware_stack
    while not isinstance(layer, HotReads):
        layer = layer.app
    return layer


def route_count(status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "exportd_http_request_duration_seconds_count",
        {"method": "GET", "route": ROUTE, "status": status},
    )
    return value or 0.0


def comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
    assert response.headers["x-request-id"]
    return response.status_code, response.content, headers


def test_a_polled_job_is_answered_by_the_fast_path_as_by_the_route(live_server: Start) -> None:
    server = live_server(workers=False)
    job = server.client(server.token("ann")).post(
        "/v1/exports", json={"exporter": "synthetic", "params": {"rows": 5}}
    )
    assert job.status_code == 202, job.text
    path = f"/v1/exports/{job.json()['id']}"
    poller = server.client(server.token("ann"))  # a token the cache has not seen yet
    before, counted = hot(server).answered, route_count("200")
    first = poller.get(path)  # the route: it authenticates, and the cache learns the token
    assert hot(server).answered == before
    second = poller.get(path)
    third = poller.get(path)
    assert hot(server).answered == before + 2
    assert comparable(first) == comparable(second) == comparable(third)
    assert first.json()["id"] == job.json()["id"]
    # labelled with the route's template (recorded once each response has gone out)
    wait_for(lambda: route_count("200") == counted + 3, what="the three requests' metrics")


def test_what_the_fast_path_cannot_answer_the_route_answers(live_server: Start) -> None:
    server = live_server(workers=False)
    ann, bob = server.client(server.token("ann")), server.client(server.token("bob"))
    admin = server.client(server.admin_token)
    job_id = ann.post("/v1/exports", json={"exporter": "synthetic", "params": {}}).json()["id"]
    bob.get("/v1/exports")  # bob's and the admin's tokens enter the cache
    admin.get("/v1/exports")
    before = hot(server).answered
    assert_problem(bob.get(f"/v1/exports/{job_id}"), 404, "not_found")  # not bob's
    assert_problem(ann.get("/v1/exports/" + "0" * 36), 404, "not_found")  # no such job
    assert_problem(ann.get("/v1/exports/not-an-id"), 404, "not_found")
    wrong = server.client("exd_" + "x" * 43)
    assert_problem(wrong.get(f"/v1/exports/{job_id}"), 401, "unauthorized")
    assert_problem(httpx.get(f"{server.url}/v1/exports/{job_id}"), 401, "unauthorized")
    assert hot(server).answered == before
    assert admin.get(f"/v1/exports/{job_id}").json()["owner"] == "ann"  # admins see all
    assert ann.get("/v1/exports", params={"limit": 1}).status_code == 200  # another route
    assert hot(server).answered == before + 1


def test_a_busy_sqlite_file_is_read_on_a_thread(
    live_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = live_server(workers=False)
    store = server.runtime.store
    if not isinstance(store, SqliteJobStore):
        pytest.skip("reads on the event loop's thread are SQLite's")
    ann = server.client(server.token("ann"))
    job_id = ann.post("/v1/exports", json={"exporter": "synthetic", "params": {}}).json()["id"]
    busy: list[str] = []

    def read_now(job: str, owner: str | None = None) -> None:
        busy.append(job)
        raise TransientStoreError("database is locked (injected)")

    monkeypatch.setattr(store, "read_now", read_now)
    before = hot(server).answered
    answer = ann.get(f"/v1/exports/{job_id}")
    assert (answer.status_code, answer.json()["id"]) == (200, job_id)
    assert busy == [job_id]
    assert hot(server).answered == before + 1  # answered from the thread


def test_read_now_waits_only_briefly_for_a_locked_file(tmp_path: Path) -> None:
    """Another process holds the file's exclusive lock: `read_now` gives up within its
    short busy timeout, as transient, and reads again once the lock is gone."""
    url = f"sqlite:///{tmp_path / 'exportd.db'}"
    setup = open_store(url)
    setup.migrate()
    job = setup.enqueue(NewJob(owner="ann", exporter="synthetic", params={}))
    setup.dispose()  # no connection of ours is open when the lock is taken
    holder = sqlite3.connect(tmp_path / "exportd.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE exportd_jobs SET updated_at = updated_at")
    holder.execute("COMMIT")  # exclusive mode: the lock stays after the commit
    store = open_store(url)
    assert isinstance(store, SqliteJobStore)
    started = time.monotonic()
    with pytest.raises(TransientStoreError):
        store.read_now(job.id, "ann")
    assert time.monotonic() - started < 5  # the store's other reads wait up to 30 s
    holder.close()
    assert store.read_now(job.id, "ann").id == job.id
    with pytest.raises(JobNotFound):
        store.read_now(job.id, "bob")
    store.dispose()
