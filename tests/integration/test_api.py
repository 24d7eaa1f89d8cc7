"""The HTTP API against a real server on a loopback port, with real workers, on SQLite and
PostgreSQL: auth and owner isolation, validation, idempotency, limits, SSE, signed
downloads and batches."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from conftest import LiveServer, wait_for
from exportd.jobs import Status

Start = Callable[..., LiveServer]
SLOW = {"exporter": "slow", "params": {"batches": 40, "rows_per_batch": 100, "delay": 0.05}}
SMALL = {"exporter": "synthetic", "params": {"rows": 2000, "seed": 1}}


def create(client: httpx.Client, body: dict[str, Any] = SMALL, **headers: str) -> dict[str, Any]:
    response = client.post("/v1/exports", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_done(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/exports/{job_id}").json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    result: dict[str, Any] = wait_for(finished, timeout, interval=0.05, what=f"job {job_id}")
    return result


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse a Server-Sent Events stream into {id, event, data} dicts."""
    message: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in message:
                yield message
            message = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(": ")
            message[field] = json.loads(value) if field == "data" else value


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def test_requests_need_a_valid_token(live_server: Start) -> None:
    """No token, a wrong token, or a revoked token all get 401 problem details."""
    server = live_server(workers=False)
    assert_problem(server.client(None).get("/v1/exports"), 401, "unauthorized")
    assert_problem(server.client("exd_wrong").get("/v1/exports"), 401, "unauthorized")
    secret = server.token("alice")
    client = server.client(secret)
    assert client.get("/v1/exports").status_code == 200
    (token,) = server.runtime.store.list_tokens("alice")
    server.runtime.store.revoke_token(token.id)
    response = client.get("/v1/exports")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_another_owners_ids_are_not_found_on_every_route(live_server: Start) -> None:
    """Every route given another owner's job or batch id answers 404; an admin sees it."""
    server = live_server()
    alice = server.client(server.token("alice"))
    mallory = server.client(server.token("mallory"))
    job = create(alice)
    wait_done(alice, job["id"])
    batch = alice.post("/v1/batches", json={"exports": [SMALL]}).json()
    base = f"/v1/exports/{job['id']}"
    for method, path in [
        ("GET", base),
        ("POST", f"{base}/cancel"),
        ("POST", f"{base}/retry"),
        ("DELETE", base),
        ("GET", f"{base}/events"),
        ("GET", f"{base}/download"),
        ("GET", f"/v1/batches/{batch['id']}"),
    ]:
        assert_problem(mallory.request(method, path), 404, "not_found")
    assert mallory.get("/v1/exports").json()["items"] == []
    admin = server.client(server.admin_token)
    assert admin.get(base).json()["owner"] == "alice"
    assert alice.get(base).json()["status"] == "completed"


def test_bad_params_are_422_naming_the_field_and_nothing_is_queued(live_server: Start) -> None:
    """Invalid params, unknown exporters and formats are refused before anything is queued."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    body = assert_problem(
        client.post("/v1/exports", json={"exporter": "synthetic", "params": {"rows": -5}}),
        422,
        "invalid_params",
    )
    assert body["errors"][0]["loc"] == ["params", "rows"]
    assert "params.rows" in body["detail"]
    assert_problem(client.post("/v1/exports", json={"exporter": "nope"}), 422, "unknown_exporter")
    assert_problem(
        client.post("/v1/exports", json={**SMALL, "format": "docx"}), 422, "invalid_format"
    )
    assert_problem(
        client.post("/v1/exports", json={**SMALL, "compression": "rar"}), 422, "invalid_compression"
    )
    assert_problem(client.post("/v1/exports", json={"params": {}}), 422, "validation_error")
    assert server.runtime.store.count_by_status() == {}


def test_idempotency_key_returns_the_same_job(live_server: Start) -> None:
    """The same key and body give the same job (200); the same key with another body is 409."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    first = client.post("/v1/exports", json=SMALL, headers={"Idempotency-Key": "abc"})
    again = client.post("/v1/exports", json=SMALL, headers={"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["location"] == f"/v1/exports/{first.json()['id']}"
    other = {**SMALL, "params": {"rows": 3}}
    body = assert_problem(
        client.post("/v1/exports", json=other, headers={"Idempotency-Key": "abc"}),
        409,
        "idempotency_key_reused",
    )
    assert body["job_id"] == first.json()["id"]
    bob = server.client(server.token("bob"))
    theirs = bob.post("/v1/exports", json=SMALL, headers={"Idempotency-Key": "abc"})
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    assert server.runtime.store.count_by_status() == {"queued": 2}


def test_active_job_limit_is_429_with_retry_after(live_server: Start) -> None:
    """Past the per-owner limit of queued + running jobs a request gets 429 and Retry-After."""
    server = live_server(workers=False, max_active_per_owner=2)
    client = server.client(server.token("alice"))
    create(client)
    create(client)
    response = client.post("/v1/exports", json=SMALL)
    body = assert_problem(response, 429, "too_many_active_jobs")
    assert response.headers["retry-after"] == "5"
    assert (body["active"], body["limit"]) == (2, 2)
    create(server.client(server.token("bob")))  # others are not affected


def test_oversized_bodies_are_413(live_server: Start) -> None:
    """A request body over the limit is refused with problem details, nothing queued."""
    server = live_server(workers=False, max_body_bytes=2048)
    client = server.client(server.token("alice"))
    body = {
        **SMALL,
        "params": {"rows": 1, "seed": 1, "columns": {f"c{i}": "int" for i in range(400)}},
    }
    assert_problem(client.post("/v1/exports", json=body), 413, "body_too_large")
    assert server.runtime.store.count_by_status() == {}


def test_job_lifecycle_over_http(live_server: Start) -> None:
    """Create → completed with progress and artifacts; cancel a running job; retry it."""
    server = live_server()
    client = server.client(server.token("alice"))
    created = client.post("/v1/exports", json=SMALL)
    assert created.headers["location"] == f"/v1/exports/{created.json()['id']}"
    done = wait_done(client, created.json()["id"])
    assert done["status"] == "completed"
    assert done["progress"]["percent"] == 100.0 and done["progress"]["done"] == 2000
    assert done["artifacts"][0]["rows"] == 2000 and done["links"]["download"]
    slow = create(client, SLOW)
    wait_for(lambda: client.get(f"/v1/exports/{slow['id']}").json()["progress"]["done"] > 0)
    assert client.post(f"/v1/exports/{slow['id']}/cancel").status_code == 200
    assert wait_done(client, slow["id"])["status"] == "cancelled"
    retried = client.post(f"/v1/exports/{slow['id']}/retry").json()
    assert (retried["status"], retried["attempt"]) == ("queued", 0)
    assert wait_done(client, slow["id"])["status"] == "completed"
    assert_problem(client.post(f"/v1/exports/{done['id']}/retry"), 409, "invalid_state")


def test_list_filters_and_pagination(live_server: Start) -> None:
    """Listing is newest first, filters by status and exporter, and pages with a cursor."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    ids = [create(client)["id"] for _ in range(5)]
    client.post(f"/v1/exports/{ids[0]}/cancel")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/exports", params=params).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    cancelled = client.get("/v1/exports", params={"status": "cancelled"}).json()["items"]
    assert [job["id"] for job in cancelled] == [ids[0]]
    assert client.get("/v1/exports", params={"exporter": "slow"}).json()["items"] == []
    assert_problem(client.get("/v1/exports", params={"status": "lost"}), 422, "validation_error")


def test_delete_cancels_and_removes_files(live_server: Start) -> None:
    """DELETE removes a finished job and its file; a running one is cancelled first."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = wait_done(client, create(client)["id"])
    storage = server.runtime.storage
    assert len(list(storage.keys())) == 1
    assert client.delete(f"/v1/exports/{job['id']}").status_code == 204
    assert_problem(client.get(f"/v1/exports/{job['id']}"), 404, "not_found")
    assert list(storage.keys()) == []
    running = create(client, SLOW)
    wait_for(lambda: client.get(f"/v1/exports/{running['id']}").json()["status"] == "running")
    assert client.delete(f"/v1/exports/{running['id']}").status_code == 204
    assert_problem(client.get(f"/v1/exports/{running['id']}"), 404, "not_found")


def test_sse_replays_missed_events_after_a_disconnect(live_server: Start) -> None:
    """Reconnecting with Last-Event-ID resumes exactly after the last event received: no
    event is lost or repeated, and the stream ends after the terminal event."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = create(client, SLOW)
    url = f"/v1/exports/{job['id']}/events"
    received: list[dict[str, Any]] = []
    with client.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for message in sse(response):
            received.append(message)
            if len(received) == 4:
                break  # drop the connection mid-export
    time.sleep(0.5)  # events happen while we are away
    last = received[-1]["id"]
    with client.stream("GET", url, headers={"Last-Event-ID": last}) as response:
        received += list(sse(response))
    ids = [int(m["id"]) for m in received]
    stored = [e.id for e in server.runtime.store.events_after(0, job_id=job["id"])]
    assert ids == stored
    assert received[-1]["event"] == "completed" and received[-1]["data"]["status"] == "completed"
    progress = [m["data"]["done"] for m in received if m["event"] == "progress"]
    assert progress == sorted(progress) and len(progress) >= 3


def test_sse_on_a_finished_job_ends(live_server: Start) -> None:
    """A stream opened after the terminal event (Last-Event-ID at or past it) ends at once."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = wait_done(client, create(client)["id"])
    url = f"/v1/exports/{job['id']}/events"
    with client.stream("GET", url) as response:
        replayed = list(sse(response))
    assert replayed[-1]["event"] == "completed"
    for last in (replayed[-1]["id"], "999999"):
        with client.stream("GET", url, headers={"Last-Event-ID": last}) as response:
            assert list(sse(response)) == []


def test_sse_follows_a_worker_in_another_process(
    live_server: Start, spawn_worker: Callable[..., Any]
) -> None:
    """An API process without workers streams the progress written by a worker process."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    job = create(client, SLOW)
    spawn_worker(server.runtime.settings)
    with client.stream("GET", f"/v1/exports/{job['id']}/events") as response:
        messages = list(sse(response))
    types = [m["event"] for m in messages]
    assert types[0] == "created" and types[-1] == "completed"
    assert types.count("progress") >= 3
    assert client.get(f"/v1/exports/{job['id']}").json()["status"] == "completed"


def test_owner_event_stream_shows_only_own_jobs(live_server: Start) -> None:
    """/v1/events streams every job of the caller and none of another owner's."""
    server = live_server()
    alice = server.client(server.token("alice"))
    bob = server.client(server.token("bob"))
    mine = create(alice)
    theirs = create(bob)
    wait_done(alice, mine["id"])
    wait_done(bob, theirs["id"])
    seen: list[dict[str, Any]] = []
    with alice.stream("GET", "/v1/events", params={"after": 0}) as response:
        for message in sse(response):
            seen.append(message)
            if message["event"] == "completed":
                break
    assert {m["data"]["job_id"] for m in seen} == {mine["id"]}


def download_link(client: httpx.Client, job_id: str) -> str:
    response = client.get(f"/v1/exports/{job_id}/download")
    assert response.status_code == 307
    assert int(response.headers["x-expires-at"]) > time.time()
    location: str = response.headers["location"]
    assert location.startswith("/v1/files/")
    return location


def test_signed_download_supports_range_resume_and_counts(live_server: Start) -> None:
    """The signed link needs no token; HEAD, Range and ETag let a client resume and end up
    with a byte-identical file; a completed download is counted once."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = wait_done(client, create(client, {**SMALL, "compression": "gzip"})["id"])
    artifact = job["artifacts"][0]
    link = download_link(client, job["id"])
    anonymous = server.client(None)
    head = anonymous.head(link)
    assert head.status_code == 200 and int(head.headers["content-length"]) == artifact["size"]
    assert head.headers["etag"] == f'"{artifact["sha256"]}"'
    assert head.headers["accept-ranges"] == "bytes"
    assert "filename=" in head.headers["content-disposition"]
    first = anonymous.get(link, headers={"Range": "bytes=0-999"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-999/{artifact['size']}"
    rest = anonymous.get(link, headers={"Range": "bytes=1000-", "If-Range": head.headers["etag"]})
    assert rest.status_code == 206
    data = first.content + rest.content
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    whole = anonymous.get(link)
    assert whole.status_code == 200 and whole.content == data
    bad = anonymous.get(link, headers={"Range": f"bytes={artifact['size'] + 10}-"})
    assert_problem(bad, 416, "range_not_satisfiable")
    downloads = client.get(f"/v1/exports/{job['id']}").json()["artifacts"][0]["downloads"]
    assert downloads == 2  # the resumed one and the whole one; the first part was not


def test_signed_links_refuse_tampering_expiry_and_deleted_jobs(live_server: Start) -> None:
    """A tampered link is 403, an expired one 410, one to a deleted job 404."""
    server = live_server(link_ttl_seconds=1)
    client = server.client(server.token("alice"))
    anonymous = server.client(None)
    job = wait_done(client, create(client)["id"])
    link = download_link(client, job["id"])
    payload, signature = link.removeprefix("/v1/files/").split(".")
    forged = (
        f"/v1/files/{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    )
    assert_problem(anonymous.get(forged), 403, "link_invalid")
    assert_problem(anonymous.get("/v1/files/garbage"), 403, "link_invalid")
    time.sleep(2.1)  # a link lives at least its TTL: until the next whole second + 1 s
    assert_problem(anonymous.get(link), 410, "link_expired")
    fresh = download_link(client, job["id"])
    assert client.delete(f"/v1/exports/{job['id']}").status_code == 204
    assert_problem(anonymous.get(fresh), 404, "not_found")


def test_download_before_completion_is_409(live_server: Start) -> None:
    """Asking for the file of a job that has not completed is a clear conflict."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    job = create(client)
    assert_problem(client.get(f"/v1/exports/{job['id']}/download"), 409, "not_ready")


def test_batches_are_all_or_nothing(live_server: Start) -> None:
    """One invalid export refuses the whole batch; a valid batch reports counts and progress."""
    server = live_server()
    client = server.client(server.token("alice"))
    bad = {"exports": [SMALL, {"exporter": "synthetic", "params": {"rows": "x"}}]}
    body = assert_problem(client.post("/v1/batches", json=bad), 422, "invalid_params")
    assert body["index"] == 1
    assert server.runtime.store.count_by_status() == {}
    created = client.post("/v1/batches", json={"exports": [SMALL, SMALL, SMALL]})
    assert created.status_code == 201
    batch = created.json()
    assert batch["size"] == 3 and len(batch["job_ids"]) == 3
    done = wait_for(
        lambda: (b := client.get(f"/v1/batches/{batch['id']}").json())["done"] and b,
        what="the batch to finish",
    )
    assert done["counts"] == {"completed": 3} and done["progress"]["percent"] == 100.0
    listed = client.get("/v1/exports", params={"batch_id": batch["id"]}).json()["items"]
    assert sorted(j["id"] for j in listed) == batch["job_ids"]
    too_many = {"exports": [SMALL] * 101}
    assert_problem(client.post("/v1/batches", json=too_many), 422, "batch_too_large")


def test_exporters_and_health(live_server: Start) -> None:
    """The exporter list carries JSON Schemas; health, readiness and metrics answer."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    exporters = {e["name"]: e for e in client.get("/v1/exporters").json()}
    assert "rows" in exporters["synthetic"]["params_schema"]["properties"]
    assert "csv" in exporters["synthetic"]["formats"]
    anonymous = server.client(None)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/readyz").json()["status"] == "ready"
    create(client)
    assert anonymous.get("/metrics").status_code == 401
    admin = server.client(server.admin_token)
    assert 'exportd_queue_depth{status="queued"} 1.0' in admin.get("/metrics").text
    assert "/v1/exports" in anonymous.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("status", [Status.COMPLETED])
def test_progress_reports_rate_and_eta(live_server: Start, status: Status) -> None:
    """A running job reports a rate and an ETA; a completed one a rate and 100 %."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = create(client, SLOW)
    running = wait_for(
        lambda: (j := client.get(f"/v1/exports/{job['id']}").json())["progress"]["done"] > 0 and j,
        what="progress",
    )
    assert running["progress"]["rate"] > 0 and running["progress"]["eta_seconds"] is not None
    done = wait_done(client, job["id"])
    assert done["status"] == status and done["progress"]["rate"] > 0
