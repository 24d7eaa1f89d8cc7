"""Prometheus metrics, scraped from a real API server and a real `exportd worker
--metrics-port` subprocess and parsed with prometheus-client's own parser, on SQLite and
PostgreSQL: who may scrape, the counters that move when jobs run and fail, the store's
gauges read at scrape time, SSE connections, deliveries and lease rescues."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_api import SLOW, create, wait_done

from conftest import LiveServer, free_port, wait_for, wait_for_status
from exportd.config import Settings
from exportd.jobs import NewJob, Status
from exportd.observability import record_delivery
from exportd.observability.metrics import render
from exportd.store import open_store

Start = Callable[..., LiveServer]
Spawn = Callable[..., subprocess.Popen[bytes]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 for a labelled series not yet seen."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(server: LiveServer) -> Samples:
    response = server.client(server.admin_token).get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def test_metrics_need_an_admin_token(live_server: Start) -> None:
    """No token is 401, an owner's token 403, an admin's 200 in the text format."""
    server = live_server(workers=False)
    assert server.client(None).get("/metrics").status_code == 401
    assert server.client(server.token("alice")).get("/metrics").status_code == 403
    assert value(scrape(server), "exportd_store_up") == 1.0


def test_metrics_can_be_made_public(live_server: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `EXPORTD_METRICS_PUBLIC=true` anyone on the network may scrape."""
    monkeypatch.setenv("EXPORTD_METRICS_PUBLIC", "true")
    server = live_server(workers=False)
    response = server.client(None).get("/metrics")
    assert response.status_code == 200
    assert "exportd_queue_depth" in response.text


def test_the_queue_depth_is_read_from_the_store(live_server: Start) -> None:
    """Jobs queued by anyone show up in the gauges at the next scrape, and leave them
    when they are cancelled."""
    server = live_server(workers=False)
    client = server.client(server.token("alice"))
    jobs = [create(client) for _ in range(3)]
    samples = scrape(server)
    assert value(samples, "exportd_queue_depth", status="queued") == 3
    assert value(samples, "exportd_queue_depth", status="running") == 0
    assert value(samples, "exportd_queue_oldest_ready_seconds") > 0
    client.post(f"/v1/exports/{jobs[0]['id']}/cancel")
    assert value(scrape(server), "exportd_queue_depth", status="queued") == 2


def test_finished_jobs_move_the_counters(live_server: Start) -> None:
    """A completed export adds its rows and bytes and one completed attempt; a failed one
    counts its error code; stored bytes are the store's."""
    server = live_server()
    client = server.client(server.token("alice"))
    code = f"code_{uuid.uuid4().hex[:8]}"
    before = scrape(server)
    done = wait_done(
        client, create(client, {"exporter": "synthetic", "params": {"rows": 1234}})["id"]
    )
    failed = create(client, {"exporter": "flaky", "params": {"permanent": True, "code": code}})
    assert wait_done(client, failed["id"])["status"] == "failed"
    after = scrape(server)
    size = done["artifacts"][0]["size"]

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    csv = {"exporter": "synthetic", "format": "csv"}
    assert moved("exportd_job_duration_seconds_count", **csv, outcome="completed") == 1
    assert moved("exportd_rows_exported_total", **csv) == 1234
    assert moved("exportd_bytes_exported_total", **csv) == size
    assert moved("exportd_job_failures_total", exporter="flaky", code=code) == 1
    assert (
        moved(
            "exportd_job_duration_seconds_count", exporter="flaky", format="csv", outcome="failed"
        )
        == 1
    )
    assert moved("exportd_job_attempts_total", exporter="synthetic") == 1
    assert moved("exportd_job_queue_wait_seconds_count", **csv) == 1
    assert moved("exportd_claim_duration_seconds_count") >= 1
    route = {"method": "POST", "route": "/v1/exports", "status": "202"}
    assert moved("exportd_http_request_duration_seconds_count", **route) == 2
    assert value(after, "exportd_storage_bytes") == size
    assert value(after, "exportd_storage_files") == 1


def test_sse_streams_and_deliveries_are_counted(live_server: Start) -> None:
    """An open event stream is one SSE connection until it closes; deliveries the
    deliverer reports are counted by channel and outcome."""
    server = live_server()
    client = server.client(server.token("alice"))
    before = value(scrape(server), "exportd_sse_connections")
    job = create(client, SLOW)
    with client.stream("GET", f"/v1/exports/{job['id']}/events") as stream:
        lines = stream.iter_lines()  # kept: dropping it would close the connection
        assert next(lines) == "retry: 2000"
        assert value(scrape(server), "exportd_sse_connections") == before + 1
    wait_for(
        lambda: value(scrape(server), "exportd_sse_connections") == before,
        what="the closed stream to be counted out",
    )
    counted = scrape(server)
    record_delivery("webhook", "delivered")
    record_delivery("webhook", "delivered")
    record_delivery("email", "failed")
    now = scrape(server)
    for channel, outcome, times in (("webhook", "delivered", 2), ("email", "failed", 1)):
        labels = {"channel": channel, "outcome": outcome}
        grew = value(now, "exportd_deliveries_total", **labels)
        assert grew - value(counted, "exportd_deliveries_total", **labels) == times


def test_a_store_that_does_not_answer_is_a_gauge_not_a_failed_scrape() -> None:
    """Scraping with an unreachable job store still answers, with `exportd_store_up 0`
    and the process's own metrics."""
    store = open_store("postgresql://exportd@127.0.0.1:1/nowhere")
    samples = parse(render(store).decode())
    store.dispose()
    assert value(samples, "exportd_store_up") == 0
    assert ("exportd_queue_depth", frozenset({("status", "queued")})) not in samples
    assert value(samples, "exportd_build_info", version=_version(samples)) == 1


def _version(samples: Samples) -> str:
    (labels,) = [dict(labels) for name, labels in samples if name == "exportd_build_info"]
    return labels["version"]


def scrape_port(port: int) -> Samples:
    def answer() -> str | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None

    text: str = wait_for(answer, timeout=60, interval=0.2, what="the worker's metrics port")
    return parse(text)


@pytest.mark.slow
def test_a_worker_serves_its_own_metrics(
    settings_for: Callable[..., Settings], spawn_worker: Spawn
) -> None:
    """`exportd worker --metrics-port` serves what that process did: the job it rescued
    from a worker killed with SIGKILL, then ran; the jobs it completed, with their rows
    and bytes; the failure it counted by code; its claims. The store's gauges are the
    API's, not repeated by workers."""
    settings = settings_for(lease_seconds=2.0)
    store = open_store(settings.resolved_database_url())
    store.migrate()
    slow = store.enqueue(NewJob(owner="ann", exporter="slow", params=SLOW["params"]))
    doomed = spawn_worker(settings)
    wait_for_status(store, slow.id, Status.RUNNING, timeout=60)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    code = f"code_{uuid.uuid4().hex[:8]}"
    made: dict[str, Any] = {"rows": 2500}
    rows = store.enqueue(NewJob(owner="ann", exporter="synthetic", params=made))
    bad = store.enqueue(
        NewJob(owner="bob", exporter="flaky", params={"permanent": True, "code": code})
    )
    port = free_port()
    spawn_worker(settings, "--metrics-port", str(port))
    for job in (slow, rows, bad):
        wait_for_status(store, job.id, Status.COMPLETED, Status.FAILED, timeout=120)
    samples = scrape_port(port)
    size = store.get(rows.id).artifacts[0].size
    assert value(samples, "exportd_lease_rescues_total", outcome="queued") == 1
    for exporter in ("slow", "synthetic"):
        labels = {"exporter": exporter, "format": "csv", "outcome": "completed"}
        assert value(samples, "exportd_job_duration_seconds_count", **labels) == 1
    csv = {"exporter": "synthetic", "format": "csv"}
    assert value(samples, "exportd_rows_exported_total", **csv) == 2500
    assert value(samples, "exportd_bytes_exported_total", **csv) == size
    assert value(samples, "exportd_job_failures_total", exporter="flaky", code=code) == 1
    assert value(samples, "exportd_claim_duration_seconds_count") >= 1
    assert not any(name == "exportd_queue_depth" for name, _ in samples)
    store.dispose()
