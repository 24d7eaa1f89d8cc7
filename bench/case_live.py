"""Cases 6 and 7 against a real `exportd serve` subprocess on loopback.

6: 500 concurrent SSE watchers on one running job: the delay from the worker's progress
   write (the event's timestamp) to its receipt by each watcher.
7: `GET /v1/exports/{id}` requests per second at 50 concurrent keep-alive connections,
   from a bounded load generator (raw asyncio HTTP/1.1, fixed duration)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from bench.harness import Result, Server, exportd_env, median, percentile, workdir
from exportd.store import open_store

CONNECT: dict[str, float] = {}


async def _watch(
    port: int, path: str, token: str, delays: list[float], ready: Any, started: Any
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    received = 0
    streaming = False
    try:
        while line := await reader.readline():
            if not line.startswith(b"data: "):
                continue
            now = time.time()
            data = json.loads(line[6:])
            if not streaming:
                streaming = True
                ready()  # this watcher is live: its stream is set up and delivering
            if data.get("type") == "progress":
                written = datetime.fromisoformat(data["at"]).timestamp()
                if written > started():
                    delays.append((now - written) * 1000)
                    received += 1
            if data.get("type") in ("completed", "failed", "cancelled"):
                break
    finally:
        writer.close()
    return received


async def _fan_out(
    server: Server, job_id: str, watchers: int, after: int = 0
) -> tuple[list[float], list[int]]:
    """Connect every watcher, then count only progress written once every watcher has
    received its first event: that measures live delivery, not the connect burst (which
    is reported apart as `connect_seconds`)."""
    delays: list[float] = []
    connected = 0
    all_connected = float("inf")
    started = time.time()

    def ready() -> None:
        nonlocal connected, all_connected
        connected += 1
        if connected == watchers:
            all_connected = time.time()
            delays.clear()
            CONNECT["seconds"] = all_connected - started

    path = f"/v1/exports/{job_id}/events?after={after}"
    tasks = [
        asyncio.create_task(
            _watch(server.port, path, server.token, delays, ready, lambda: all_connected)
        )
        for _ in range(watchers)
    ]
    counts = await asyncio.gather(*tasks)
    return delays, list(counts)


def sse_fan_out(quick: bool) -> Result:
    watchers = 100 if quick else 500
    ticks = 60 if quick else 300
    with workdir() as home:
        server = Server(exportd_env(home, progress_interval=0.1), concurrency=1)
        try:
            with server.client() as client:
                # A job that starts after all watchers are connected: queue it, hold the
                # worker back with a short first job, then watch the ticker.
                job = client.post(
                    "/v1/exports",
                    json={"exporter": "ticker", "params": {"ticks": ticks, "interval": 0.05}},
                ).json()
            # Watchers ask for what comes next (as a page holding a snapshot does): this
            # measures live delivery, not 500 replays of the history at connect time.
            store = open_store(f"sqlite:///{home / 'exportd.db'}")
            after = store.last_event_id()
            store.dispose()
            delays, counts = asyncio.run(_fan_out(server, job["id"], watchers, after))
        finally:
            server.stop()
    return Result(
        "6 live progress",
        f"{watchers} SSE watchers, progress write to receipt p99",
        percentile(delays, 99),
        unit="ms",
        goal="p99 <= 250 ms",
        met=percentile(delays, 99) <= 250,
        samples={
            "p50": median(delays),
            "events_received": len(delays),
            "watchers_with_events": sum(1 for c in counts if c),
            "connect_seconds": CONNECT.get("seconds"),
        },
    )


async def _hammer(port: int, path: str, token: str, until: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    done = 0
    try:
        while time.monotonic() < until:
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            assert body.startswith(b"{")
            latencies.append((time.perf_counter() - start) * 1000)
            done += 1
    finally:
        writer.close()
    return done


def api_load(quick: bool) -> Result:
    seconds = 3.0 if quick else 10.0
    connections = 50
    with workdir() as home:
        server = Server(exportd_env(home), workers=False)
        try:
            with server.client() as client:
                job = client.post("/v1/exports", json={"exporter": "noop", "params": {}}).json()
            path = f"/v1/exports/{job['id']}"
            latencies: list[float] = []

            async def load() -> int:
                until = time.monotonic() + seconds
                counts = await asyncio.gather(
                    *[
                        _hammer(server.port, path, server.token, until, latencies)
                        for _ in range(connections)
                    ]
                )
                return sum(counts)

            started = time.perf_counter()
            total = asyncio.run(load())
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
    return Result(
        "7 API",
        f"GET /v1/exports/{{id}} at {connections} connections",
        total / elapsed,
        unit="req/s",
        samples={
            "p50_ms": median(latencies),
            "p99_ms": percentile(latencies, 99),
            "requests": total,
        },
    )


def run(quick: bool, pg_url: str) -> list[Result]:
    return [sse_fan_out(quick), api_load(quick)]
