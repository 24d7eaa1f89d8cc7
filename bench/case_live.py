"""Cases 6 and 7 against a real `exportd serve` subprocess on loopback.

6: 500 concurrent SSE watchers on one running job: the delay from the worker's progress
   write (the event's timestamp) to its receipt by each watcher.
7: `GET /v1/exports/{id}` requests per second at 50 concurrent keep-alive connections,
   from a bounded load generator (raw asyncio HTTP/1.1, fixed duration), beside the
   smallest FastAPI endpoint answering the same body from memory (`bench.minimal_api`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    ROOT,
    Result,
    Server,
    exportd_env,
    free_port,
    median,
    percentile,
    workdir,
)
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


CONNECTIONS = 50


def _load(port: int, path: str, token: str, seconds: float) -> tuple[float, list[float]]:
    """Requests per second and every latency (ms) of `CONNECTIONS` keep-alive loops."""
    latencies: list[float] = []

    async def load() -> int:
        until = time.monotonic() + seconds
        counts = await asyncio.gather(
            *[_hammer(port, path, token, until, latencies) for _ in range(CONNECTIONS)]
        )
        return sum(counts)

    started = time.perf_counter()
    total = asyncio.run(load())
    return total / (time.perf_counter() - started), latencies


def _minimal_api(body: bytes, home: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    body_file = home / "body.json"
    body_file.write_bytes(body)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.minimal_api", str(port), str(body_file)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/exports/x", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the minimal FastAPI app did not start")


def api_load(quick: bool) -> list[Result]:
    """exportd's `GET /v1/exports/{id}` then the minimal endpoint, A then B, repeated;
    the ratio is the median of the per-run ratios of requests per second."""
    seconds = 3.0 if quick else 10.0
    repeats = 1 if quick else 3
    with workdir() as home:
        server = Server(exportd_env(home), workers=False)
        try:
            with server.client() as client:
                job = client.post("/v1/exports", json={"exporter": "noop", "params": {}}).json()
                body = client.get(f"/v1/exports/{job['id']}").content
            path = f"/v1/exports/{job['id']}"
            reference, reference_port = _minimal_api(body, home)
            ours: list[float] = []
            theirs: list[float] = []
            ours_ms: list[float] = []
            theirs_ms: list[float] = []
            try:
                for _ in range(repeats):
                    rate, latencies = _load(server.port, path, server.token, seconds)
                    ours.append(rate)
                    ours_ms += latencies
                    rate, latencies = _load(reference_port, path, server.token, seconds)
                    theirs.append(rate)
                    theirs_ms += latencies
            finally:
                reference.terminate()
                reference.wait()
        finally:
            server.stop()
    ratio = median([a / b for a, b in zip(ours, theirs, strict=True)])
    return [
        Result(
            "7 API",
            f"GET /v1/exports/{{id}} at {CONNECTIONS} connections, {len(body)}-byte body",
            median(ours),
            median(theirs),
            "minimal FastAPI",
            "req/s",
            ">= 0.5",
            ratio >= 0.5,
            notes=f"p99 {percentile(ours_ms, 99):.0f} ms vs {percentile(theirs_ms, 99):.0f} ms",
            samples={
                "exportd": ours,
                "reference": theirs,
                "p50_ms": median(ours_ms),
                "p99_ms": percentile(ours_ms, 99),
                "reference_p50_ms": median(theirs_ms),
                "reference_p99_ms": percentile(theirs_ms, 99),
            },
            paired_ratio=ratio,
        )
    ]


def run(quick: bool, pg_url: str) -> list[Result]:
    return [sse_fan_out(quick), *api_load(quick)]
