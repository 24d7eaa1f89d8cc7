"""exportd's Prometheus metrics.

Every process keeps its own counters in `REGISTRY` (what its workers ran, its API's
requests and SSE streams, its deliveries) and exposes them itself: the API at `/metrics`,
an `exportd worker` on `--metrics-port`. Prometheus adds the `instance` of each, and sums
across them. (prometheus-client's multiprocess mode is not used: exportd's processes are
independent and may run on many machines, so each is scraped on its own.)

What the job store knows (queue depth, stored bytes) is read at scrape time by
`StoreCollector`, from the partial indexes and the owners table, and exposed by the API
only: any one server gives the whole picture, and workers add none of it twice.

Recording is O(1) per job and never touches the store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exportd.errors import StoreError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from exportd.store import SqlJobStore

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""exportd's own registry (not prometheus-client's global one, which a host application
may use for its own metrics)."""
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

JOB_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800, 21600)
WAIT_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
CLAIM_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

JOB_DURATION = Histogram(
    "exportd_job_duration_seconds",
    "How long attempts ran in this process, from claim to end, by how they ended "
    "(completed, failed, retried, cancelled, released, lost).",
    ["exporter", "format", "outcome"],
    buckets=JOB_SECONDS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "exportd_job_queue_wait_seconds",
    "How long jobs claimed by this process were runnable before the claim.",
    ["exporter", "format"],
    buckets=WAIT_SECONDS,
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "exportd_job_attempts", "Attempts started in this process.", ["exporter"], registry=REGISTRY
)
FAILURES = Counter(
    "exportd_job_failures",
    "Failed attempts by error code (retried or final).",
    ["exporter", "code"],
    registry=REGISTRY,
)
ROWS = Counter(
    "exportd_rows_exported",
    "Rows (the progress unit) of completed exports.",
    ["exporter", "format"],
    registry=REGISTRY,
)
BYTES = Counter(
    "exportd_bytes_exported",
    "Bytes of the files of completed exports.",
    ["exporter", "format"],
    registry=REGISTRY,
)
CLAIM_DURATION = Histogram(
    "exportd_claim_duration_seconds",
    "How long claim transactions that took at least one job lasted.",
    buckets=CLAIM_SECONDS,
    registry=REGISTRY,
)
RESCUES = Counter(
    "exportd_lease_rescues",
    "Jobs whose lease ran out, put back by this process's rescuer, by what they became.",
    ["outcome"],
    registry=REGISTRY,
)
SSE_CONNECTIONS = Gauge(
    "exportd_sse_connections", "Server-Sent Events streams open now.", registry=REGISTRY
)
DELIVERIES = Counter(
    "exportd_deliveries",
    "Webhook and e-mail delivery tries by outcome.",
    ["channel", "outcome"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "exportd_http_request_duration_seconds",
    "API requests by route template, method and status (streams: until they ended).",
    ["method", "route", "status"],
    registry=REGISTRY,
)
BUILD = Info("exportd_build", "The exportd version of this process.", registry=REGISTRY)


def _version() -> str:
    try:
        return version("exportd")
    except PackageNotFoundError:
        return "unknown"


BUILD.info({"version": _version()})


def record_delivery(channel: str, outcome: str) -> None:
    """Count one delivery try: `channel` `webhook` or `email`; `outcome` `delivered`,
    `retrying` (it failed and will be tried again) or `failed` (given up)."""
    DELIVERIES.labels(channel, outcome).inc()


def record_claim(seconds: float, claimed: int) -> None:
    if claimed:
        CLAIM_DURATION.observe(seconds)


class StoreCollector(Collector):
    """Queue depth and stored bytes, read from the job store when scraped. A store that
    does not answer gives `exportd_store_up 0` instead of failing the scrape."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("exportd_store_up", "Whether the job store answered this scrape.")
        try:
            depth = self.store.queue_depth()
            totals = self.store.storage_totals()
        except StoreError as exc:
            log.warning("metrics: the job store did not answer: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        queue = GaugeMetricFamily(
            "exportd_queue_depth", "Jobs queued or running, in the store.", labels=["status"]
        )
        queue.add_metric(["queued"], depth.queued)
        queue.add_metric(["running"], depth.running)
        oldest = GaugeMetricFamily(
            "exportd_queue_oldest_ready_seconds",
            "How long the longest-waiting runnable queued job has waited.",
            value=depth.oldest_ready_seconds,
        )
        stored = GaugeMetricFamily(
            "exportd_storage_bytes", "Bytes of all owners' stored files.", value=totals.bytes_stored
        )
        files = GaugeMetricFamily(
            "exportd_storage_files", "All owners' stored files.", value=totals.artifacts
        )
        return [up, queue, oldest, stored, files]


class _Together(Collector):
    def __init__(self, *parts: Collector) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def render(store: SqlJobStore | None = None) -> bytes:
    """This process's metrics in the Prometheus text format, with the store's gauges when
    `store` is given."""
    if store is None:
        return generate_latest(REGISTRY)
    return generate_latest(_Together(REGISTRY, StoreCollector(store)))


def serve(host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve this process's metrics on `host:port` from a daemon thread (any path)."""
    return start_http_server(port, addr=host, registry=REGISTRY)


__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "StoreCollector",
    "record_claim",
    "record_delivery",
    "render",
    "serve",
]
