"""Logs and request ids: a real `exportd worker` and a real `exportd serve` subprocess with
`EXPORTD_LOG_FORMAT=json` write nothing but JSON lines on stderr, every line about a job
names it (job_id, attempt, owner, exporter, worker_id), every request line its request id;
every response carries `X-Request-ID`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import create, wait_done
from test_document_exporter import RESUME

from conftest import LiveServer, free_port, settings_env, wait_for, wait_for_status
from exportd.config import Settings
from exportd.jobs import NewJob, Status
from exportd.store import open_store

Start = Callable[..., LiveServer]
Spawn = Callable[..., subprocess.Popen[bytes]]
JOB_KEYS = ("job_id", "attempt", "owner", "exporter", "worker_id")
JSON_INFO = {"EXPORTD_LOG_FORMAT": "json", "EXPORTD_LOG_LEVEL": "INFO"}
GENERATED = re.compile(r"^[0-9a-f]{32}$")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (a line that is not one fails the test)."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def assert_job_lines_name_the_job(lines: list[dict[str, Any]], job_ids: set[str]) -> None:
    about_jobs = [line for line in lines if "job_id" in line]
    for line in about_jobs:
        assert all(line.get(key) is not None for key in JOB_KEYS), line
        assert line["job_id"] in job_ids, line
    assert {line["job_id"] for line in about_jobs} == job_ids


@pytest.mark.slow
def test_a_worker_writes_json_lines_that_name_each_job(
    settings_for: Callable[..., Settings], spawn_worker: Spawn
) -> None:
    """A CSV export, a PDF and one failing once then retried: each attempt's start and
    end, and the runner's own warning about the failure (a standard-library call), carry
    the five keys; WeasyPrint and fontTools say nothing below WARNING."""
    settings = settings_for()
    store = open_store(settings.resolved_database_url())
    store.migrate()
    jobs = [
        store.enqueue(NewJob(owner="ann", exporter="synthetic", params={"rows": 500})),
        store.enqueue(NewJob(owner="bob", exporter="flaky", params={"fail_times": 1})),
        store.enqueue(
            NewJob(
                owner="cy",
                exporter="document",
                params={"template": "resume", "data": RESUME},
                format="pdf",
            )
        ),
    ]
    proc = spawn_worker(settings, env=JSON_INFO)
    for job in jobs:
        assert wait_for_status(store, job.id, Status.COMPLETED, Status.FAILED, timeout=120)
        assert store.get(job.id).status == Status.COMPLETED
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    store.dispose()
    lines = json_lines(err.decode())
    assert_job_lines_name_the_job(lines, {job.id for job in jobs})
    assert len({line["worker_id"] for line in lines if "worker_id" in line}) == 1
    ended = sorted(
        (line["exporter"], line["attempt"], line["outcome"])
        for line in lines
        if line["event"] == "attempt ended"
    )
    assert ended == [
        ("document", 1, "completed"),
        ("flaky", 1, "retried"),
        ("flaky", 2, "completed"),
        ("synthetic", 1, "completed"),
    ]
    (warning,) = [line for line in lines if line["logger"] == "exportd.worker.runner"]
    assert (warning["level"], warning["exporter"], warning["attempt"]) == ("warning", "flaky", 1)
    assert "upstream_unavailable" in warning["event"]
    noisy = [line for line in lines if line["logger"].startswith(("weasyprint", "fontTools"))]
    assert [line for line in noisy if line["level"] in ("debug", "info")] == []


def _serve(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    settings = Settings(home=home, port=port, poll_interval=0.2, progress_interval=0.05)
    env = {**settings_env(settings), **JSON_INFO}
    command = [sys.executable, "-m", "exportd", "serve", "--app", "support.exporters"]
    with open(log, "wb") as stderr:
        return subprocess.Popen(command, env=env, stderr=stderr)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_the_server_writes_json_lines_with_request_ids(tmp_path: Path) -> None:
    """`exportd serve` logs its banner as one JSON line (the admin token in it), one line
    per request with its id (the caller's when sane), and its worker slots' job lines
    with the five keys."""
    port, log = free_port(), tmp_path / "serve.log"
    proc = _serve(tmp_path / "home", port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), timeout=60, interval=0.2, what="exportd serve")
        (banner,) = [line for line in json_lines(log.read_text()) if "admin_token" in line]
        headers = {"Authorization": f"Bearer {banner['admin_token']}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            body = {"exporter": "synthetic", "params": {"rows": 300}}
            created = client.post("/v1/exports", json=body, headers={"X-Request-ID": "ci-7.a"})
            assert created.headers["x-request-id"] == "ci-7.a"
            job = wait_done(client, created.json()["id"])
            missing = client.get("/v1/exports/nope", headers={"X-Request-ID": "two words"})
            assert GENERATED.match(missing.headers["x-request-id"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    lines = json_lines(log.read_text())
    requests = [line for line in lines if line["logger"] == "exportd.api.requests"]
    assert all(line.get("request_id") for line in requests)
    posted = [line for line in requests if line["method"] == "POST"]
    assert [(line["request_id"], line["status"]) for line in posted] == [("ci-7.a", 202)]
    not_found = [line for line in requests if line["status"] == 404]
    assert [line["request_id"] for line in not_found] == [missing.headers["x-request-id"]]
    assert_job_lines_name_the_job(lines, {job["id"]})


def test_every_response_carries_a_request_id(live_server: Start) -> None:
    """A sane `X-Request-ID` comes back as sent; an insane or missing one is replaced by a
    new id; errors carry it too: 401, 404, 413 and a crash's 500 (whose body names it)."""
    server = live_server(workers=False, max_body_bytes=2048)
    client = server.client(server.token("alice"))
    sane = "Req_1.2:3/4+5=6@7-8"
    assert client.get("/v1/exports", headers={"X-Request-ID": sane}).headers["x-request-id"] == sane
    for insane in ("has space", "x" * 129, "-leading", "a;b"):
        answer = client.get("/v1/exports", headers={"X-Request-ID": insane})
        assert GENERATED.match(answer.headers["x-request-id"]), insane
    seen = {
        client.get("/healthz").headers["x-request-id"],
        server.client(None).get("/v1/exports").headers["x-request-id"],
        client.get("/v1/exports/nope").headers["x-request-id"],
        client.post("/v1/exports", content=b"x" * 4096).headers["x-request-id"],
    }
    assert len(seen) == 4 and all(GENERATED.match(rid) for rid in seen)

    def crash() -> None:
        raise RuntimeError("a bug")

    server.server.config.app.add_api_route("/crash", crash)
    crashed = client.get("/crash", headers={"X-Request-ID": "bug-1"})
    assert crashed.status_code == 500
    assert crashed.headers["x-request-id"] == "bug-1"
    assert crashed.json()["request_id"] == "bug-1"


def test_a_stream_carries_the_request_id(live_server: Start) -> None:
    """A streaming answer (SSE) carries the request id in its headers."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = create(client)
    wait_done(client, job["id"])
    path = f"/v1/exports/{job['id']}/events"
    with client.stream("GET", path, headers={"X-Request-ID": "sse-1"}) as stream:
        assert stream.headers["x-request-id"] == "sse-1"
