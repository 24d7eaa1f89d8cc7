"""The Python client (`exportd.Client`, `exportd.AsyncClient`) against a real server and
worker: calls, error mapping, watching over SSE (with resume) and polling, downloads
(resumed, verified)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import exportd
from conftest import LiveServer, free_port, wait_for_status
from exportd import AsyncClient, Client, ExportRequest, Job, PollIntervals
from exportd.client._models import Progress
from exportd.jobs import Status
from support.proxy import CuttingProxy, Request

StartServer = Callable[..., LiveServer]
SLOW = {"batches": 12, "rows_per_batch": 100, "delay": 0.05}
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For tests of client behaviour that the job store cannot change (they run once)."""


@pytest.fixture
def server(live_server: StartServer) -> Callable[..., LiveServer]:
    """`live_server` whose running jobs are given no grace at shutdown."""

    def start(workers: bool = True, **settings: Any) -> LiveServer:
        settings.setdefault("grace_seconds", 0.0)
        return live_server(workers=workers, **settings)

    return start


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """Make `Client`s; all closed at the end."""
    made: list[Client] = []

    def make(url: str, token: str | None, **options: Any) -> Client:
        client = Client(url, token, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def stored_bytes(server: LiveServer, job_id: str) -> bytes:
    job = server.runtime.store.get(job_id)
    with server.runtime.storage.open_read(job.artifacts[0].storage_key) as handle:
        data: bytes = handle.read()
    return data


def done_values(snapshots: list[Job]) -> list[int]:
    return [s.progress.done for s in snapshots]


# -- calls and errors -------------------------------------------------------------------


def test_create_get_list_cancel_retry_delete_batch(server: StartServer) -> None:
    """Every job call returns typed objects that reflect the server's state."""
    live = server(workers=False)
    with Client(live.url, live.token("alice")) as client:
        job = client.create("synthetic", {"rows": 5}, format="ndjson", priority=3, filename="x")
        assert isinstance(job, Job)
        assert (job.status, job.exporter, job.format, job.priority) == (
            "queued",
            "synthetic",
            "ndjson",
            3,
        )
        assert job.params["rows"] == 5
        assert isinstance(job.progress, Progress)
        assert client.get(job.id) == job

        cancelled = client.cancel(job.id)
        assert cancelled.status == "cancelled"
        assert cancelled.is_terminal
        again = client.retry(job.id)
        assert (again.status, again.is_terminal) == ("queued", False)

        batch = client.batch(
            [
                ExportRequest("synthetic", {"rows": 10}),
                {"exporter": "synthetic", "params": {"rows": 20}, "format": "json"},
            ]
        )
        assert batch.size == 2
        assert len(batch.job_ids) == 2
        assert client.get_batch(batch.id).job_ids == batch.job_ids
        in_batch = client.list(batch_id=batch.id).items
        assert sorted(j.id for j in in_batch) == sorted(batch.job_ids)
        assert {j.format for j in in_batch} == {"csv", "json"}

        client.delete(job.id)
        with pytest.raises(exportd.NotFound):
            client.get(job.id)
        names = {e.name for e in client.exporters()}
        assert {"synthetic", "slow"} <= names


def test_list_pages_and_filters(server: StartServer) -> None:
    """`list` pages with a cursor and filters; `iter_jobs` walks every page, newest first."""
    live = server(workers=False)
    with Client(live.url, live.token("bob")) as client:
        created = [client.create("synthetic", {"rows": i}) for i in range(5)]
        client.cancel(created[0].id)
        first = client.list(limit=2)
        assert len(first.items) == 2
        assert first.next_cursor is not None
        second = client.list(limit=2, cursor=first.next_cursor)
        third = client.list(limit=2, cursor=second.next_cursor)
        assert third.next_cursor is None
        paged = [j.id for page in (first, second, third) for j in page.items]
        assert paged == [j.id for j in reversed(created)]
        assert [j.id for j in client.iter_jobs(page_size=2)] == paged
        assert [j.id for j in client.iter_jobs(status="cancelled")] == [created[0].id]
        assert len(list(client.iter_jobs(status=["queued", "cancelled"], page_size=3))) == 5
        assert list(client.iter_jobs(exporter="slow")) == []
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert client.list(created_after=later).items == ()
        assert len(client.list(created_before=later).items) == 5


def test_errors_map_to_the_exception_hierarchy(server: StartServer) -> None:
    """404, 401, 409, 422 and 429 problems become NotFound, Unauthorized, Conflict,
    InvalidRequest (with the code) and RateLimited (with Retry-After)."""
    live = server(workers=False, max_active_per_owner=1)
    with (
        Client(live.url, live.token("carol")) as client,
        Client(live.url, live.token("dave")) as other,
        Client(live.url, "not-a-token") as stranger,
    ):
        job = client.create("synthetic", {"rows": 1})
        with pytest.raises(exportd.NotFound) as missing:
            client.get("0190aaaa-0000-7000-8000-000000000000")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(exportd.NotFound):
            other.get(job.id)
        with pytest.raises(exportd.Unauthorized) as unauthorized:
            stranger.list()
        assert unauthorized.value.code == "unauthorized"

        with pytest.raises(exportd.InvalidRequest) as bad_params:
            client.create("synthetic", {"rows": -1})
        assert (bad_params.value.status, bad_params.value.code) == (422, "invalid_params")
        assert bad_params.value.problem["errors"][0]["loc"] == ["params", "rows"]
        for kwargs, code in (
            ({"exporter": "nope"}, "unknown_exporter"),
            ({"exporter": "synthetic", "format": "docx"}, "invalid_format"),
        ):
            with pytest.raises(exportd.InvalidRequest) as invalid:
                client.create(**kwargs)
            assert invalid.value.code == code

        with pytest.raises(exportd.RateLimited) as limited:
            client.create("synthetic", {"rows": 2})
        assert (limited.value.code, limited.value.retry_after) == ("too_many_active_jobs", 5.0)

        client.cancel(job.id)
        keyed = client.create("synthetic", {"rows": 1}, idempotency_key="k1")
        assert client.create("synthetic", {"rows": 1}, idempotency_key="k1").id == keyed.id
        with pytest.raises(exportd.Conflict) as reused:
            client.create("synthetic", {"rows": 9}, idempotency_key="k1")
        assert reused.value.code == "idempotency_key_reused"
        with pytest.raises(exportd.Conflict) as wrong_state:
            client.retry(keyed.id)
        assert wrong_state.value.code == "invalid_state"
        assert isinstance(wrong_state.value, exportd.ClientError | exportd.ExportdError)


def test_unreachable_server_raises_transport_error() -> None:
    """A refused connection is a TransportError (caused by the httpx error), after retries."""
    with (
        Client(f"http://127.0.0.1:{free_port()}", "t", retries=1) as client,
        pytest.raises(exportd.TransportError) as error,
    ):
        client.get("some-id")
    assert isinstance(error.value.__cause__, httpx.ConnectError)
    assert isinstance(error.value, exportd.ExportdError)


@sqlite_only
def test_create_is_retried_safely_after_a_lost_answer(server: StartServer) -> None:
    """When the answer to a create is lost, the retry (same Idempotency-Key) returns the
    same job instead of queuing a second one."""
    live = server(workers=False)

    def lose_first_create(request: Request) -> int | None:
        return 0 if request.method == "POST" and request.index == 0 else None

    with (
        CuttingProxy(live.url, lose_first_create) as proxy,
        Client(proxy.url, live.token("erin")) as client,
    ):
        job = client.create("synthetic", {"rows": 3})
        posts = [r for r in proxy.requests if r.method == "POST"]
        assert len(posts) == 2
        assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
        assert [j.id for j in client.iter_jobs()] == [job.id]
        assert proxy.cuts == 1


def busy(seconds: str) -> bytes:
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: "
        + seconds.encode()
        + b"\r\nContent-Type: application/problem+json\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}"
    )


@sqlite_only
@pytest.mark.parametrize(("asked", "tries"), [("0.3", 2), ("120", 1)])
def test_a_503_is_retried_after_the_time_the_server_asks_for(
    server: StartServer, monkeypatch: pytest.MonkeyPatch, asked: str, tries: int
) -> None:
    """A 503 with `Retry-After` is retried after exactly that wait (not the client's own
    backoff); a wait longer than `max_retry_after` is not waited for: the 503 is raised."""
    live = server(workers=False)
    waits: list[float] = []
    monkeypatch.setattr("exportd.client._sync.time.sleep", waits.append)

    def first_get_busy(request: Request) -> bytes | None:
        return busy(asked) if request.method == "GET" and request.index == 0 else None

    with Client(live.url, live.token("erin")) as direct:
        job = direct.create("synthetic", {"rows": 3})
    with (
        CuttingProxy(live.url, first_get_busy) as proxy,
        Client(proxy.url, live.token("erin")) as client,
    ):
        if tries == 2:
            assert client.get(job.id).id == job.id
            assert waits == [0.3]
        else:
            with pytest.raises(exportd.ServerError) as error:
                client.get(job.id)
            assert error.value.status == 503
            assert waits == []
        assert len(proxy.seen(f"/v1/exports/{job.id}")) == tries


# -- watching ---------------------------------------------------------------------------


def test_watch_follows_progress_until_completed(server: StartServer) -> None:
    """`watch` yields snapshots with growing progress and ends with the completed one."""
    live = server()
    with Client(live.url, live.token("frank")) as client:
        job = client.create("slow", SLOW)
        snapshots = list(client.watch(job.id, timeout=30))
    assert snapshots[-1].status == "completed"
    assert snapshots[-1].progress.done == 1200
    assert snapshots[-1].artifacts[0].rows == 1200
    running = [s for s in snapshots if s.status == "running" and s.progress.done > 0]
    assert len(running) >= 3
    assert done_values(snapshots) == sorted(done_values(snapshots))
    assert all(not s.is_terminal for s in snapshots[:-1])
    assert any(s.progress.message and s.progress.message.startswith("batch") for s in running)


@sqlite_only
def test_events_resume_after_dropped_connections_without_loss_or_repeat(
    server: StartServer,
) -> None:
    """Cutting the event stream mid-event, twice, loses and repeats nothing: the ids the
    client yields are exactly the job's events, in order, thanks to Last-Event-ID."""
    live = server()

    def cut_events(request: Request) -> int | None:
        return 700 if request.path.endswith("/events") and request.index < 2 else None

    with (
        CuttingProxy(live.url, cut_events) as proxy,
        Client(proxy.url, live.token("gina")) as client,
    ):
        job = client.create("slow", SLOW)
        events = list(client.events(job.id))
        streams = proxy.seen("/events")
    stored = live.runtime.store.events_after(0, job_id=job.id)
    assert [e.id for e in events] == [e.id for e in stored]
    assert [e.type for e in events] == [e.type for e in stored]
    assert events[-1].type == "completed"
    assert proxy.cuts == 2
    assert len(streams) == 3
    assert "last-event-id" not in streams[0].headers
    resumed_at = [int(s.headers["last-event-id"]) for s in streams[1:]]
    assert resumed_at == sorted(resumed_at)
    assert all(i in [e.id for e in events] for i in resumed_at)


@sqlite_only
def test_watch_resumes_after_a_cut_and_ends_completed(server: StartServer) -> None:
    """`watch` through a proxy that cuts its event streams still ends at completed, with
    progress that never goes backwards and no snapshot seen twice."""
    live = server()

    def cut_events(request: Request) -> int | None:
        return 900 if request.path.endswith("/events") and request.index < 3 else None

    with (
        CuttingProxy(live.url, cut_events) as proxy,
        Client(proxy.url, live.token("hank")) as client,
    ):
        job = client.create("slow", SLOW)
        snapshots = list(client.watch(job.id, timeout=30))
        assert proxy.cuts >= 1
    assert snapshots[-1].status == "completed"
    assert done_values(snapshots) == sorted(done_values(snapshots))
    keys = [(s.status, s.progress.done, s.progress.message) for s in snapshots]
    assert len(keys) == len(set(keys))


@sqlite_only
@pytest.mark.parametrize(
    "blocked",
    [b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", 0],
    ids=["events-route-404", "events-connection-reset"],
)
def test_watch_falls_back_to_polling_when_sse_fails(
    server: StartServer, blocked: bytes | int
) -> None:
    """With the events route answering 404, or every stream cut at once, `watch` switches
    to polling and still follows the job to completion."""
    live = server()

    def block_events(request: Request) -> bytes | int | None:
        return blocked if request.path.endswith("/events") else None

    intervals = PollIntervals(low=0.05, high=0.2, warmup=0.5)
    with (
        CuttingProxy(live.url, block_events) as proxy,
        Client(proxy.url, live.token("ivy"), poll_intervals=intervals) as client,
    ):
        job = client.create("slow", {**SLOW, "delay": 0.15})
        snapshots = list(client.watch(job.id, timeout=30))
        streams = len(proxy.seen("/events"))
        polls = len([r for r in proxy.requests if r.path == f"/v1/exports/{job.id}"])
    assert snapshots[-1].status == "completed"
    assert streams == (1 if isinstance(blocked, bytes) else 3)
    assert polls >= 3
    assert done_values(snapshots) == sorted(done_values(snapshots))


@sqlite_only
def test_watch_without_sse_polls(server: StartServer) -> None:
    """`Client(sse=False)` never opens an event stream and still sees progress."""
    live = server()
    intervals = PollIntervals(low=0.05, high=0.2, warmup=0.5)
    with (
        CuttingProxy(live.url) as proxy,
        Client(proxy.url, live.token("jack"), sse=False, poll_intervals=intervals) as client,
    ):
        job = client.create("slow", SLOW)
        snapshots = list(client.watch(job.id, timeout=30))
        assert proxy.seen("/events") == []
    assert snapshots[-1].status == "completed"
    assert any(s.status == "running" and 0 < s.progress.done < 1200 for s in snapshots)


@sqlite_only
@pytest.mark.parametrize("sse", [True, False], ids=["sse", "polling"])
def test_watch_raises_job_stalled_when_progress_stops(server: StartServer, sse: bool) -> None:
    """A running job whose progress stops for `stall_timeout` raises JobStalled (with the
    last snapshot) over SSE and when polling."""
    live = server()
    intervals = PollIntervals(low=0.05, high=0.2, warmup=0.5)
    with Client(live.url, live.token("kim"), sse=sse, poll_intervals=intervals) as client:
        job = client.create("slow", {"batches": 2, "rows_per_batch": 10, "delay": 1.5})
        wait_for_status(live.runtime.store, job.id, Status.RUNNING)
        with pytest.raises(exportd.JobStalled) as stalled:
            for _ in client.watch(job.id, stall_timeout=0.6, timeout=20):
                pass
        assert stalled.value.job.status == "running"
        assert stalled.value.seconds == 0.6
        client.cancel(job.id)


@sqlite_only
def test_watch_times_out(server: StartServer) -> None:
    """A job that never starts (no workers) ends the watch with WatchTimeout."""
    live = server(workers=False)
    with Client(live.url, live.token("lee")) as client:
        job = client.create("synthetic", {"rows": 1})
        with pytest.raises(exportd.WatchTimeout) as timed_out:
            list(client.watch(job.id, timeout=0.5))
    assert timed_out.value.job.status == "queued"


def test_wait_raises_job_failed_with_the_error(server: StartServer) -> None:
    """`wait` returns a completed job and raises JobFailed with the stored error code."""
    live = server()
    with Client(live.url, live.token("mo")) as client:
        done = client.wait(client.create("synthetic", {"rows": 3}).id, timeout=30)
        assert done.status == "completed"
        failing = client.create("flaky", {"permanent": True, "code": "source_said_no"})
        with pytest.raises(exportd.JobFailed) as failed:
            client.wait(failing.id, timeout=30)
    assert failed.value.job.error is not None
    assert failed.value.job.error.code == "source_said_no"
    assert failed.value.job.error.retryable is False


# -- downloads --------------------------------------------------------------------------


@sqlite_only
def test_download_resumes_after_a_cut_and_verifies(server: StartServer, tmp_path: Path) -> None:
    """A file transfer cut after 100 kB resumes with Range + If-Range; the result is
    byte-identical, its sha256 verified, and no .part is left."""
    live = server()

    def cut_first_file(request: Request) -> int | None:
        return 100_000 if request.path.startswith("/v1/files/") and request.index == 0 else None

    with (
        CuttingProxy(live.url, cut_first_file) as proxy,
        Client(proxy.url, live.token("nia")) as client,
    ):
        job = client.wait(client.create("synthetic", {"rows": 5000}).id, timeout=60)
        seen: list[int] = []
        result = client.download(
            job.id, tmp_path / "out.csv", on_progress=lambda d, t: seen.append(d)
        )
        files = proxy.seen("/v1/files/")
    expected = stored_bytes(live, job.id)
    assert len(expected) > 300_000
    assert result.path == tmp_path / "out.csv"
    assert result.path.read_bytes() == expected
    assert result.artifact.sha256 == hashlib.sha256(expected).hexdigest()
    assert not (tmp_path / "out.csv.part").exists()
    assert proxy.cuts == 1
    assert len(files) == 2
    assert "range" not in files[0].headers
    resume_from = int(files[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resume_from < 100_000
    assert files[1].headers["if-range"] == f'"{result.artifact.sha256}"'
    assert "authorization" not in files[0].headers
    assert seen[-1] == len(expected)


@sqlite_only
def test_download_resumes_a_part_left_by_an_earlier_run(
    server: StartServer, tmp_path: Path
) -> None:
    """A `.part` from an interrupted earlier call is continued, not downloaded again; a
    directory target gets the artifact's name."""
    live = server()
    with (
        CuttingProxy(live.url) as proxy,
        Client(proxy.url, live.token("oz")) as client,
    ):
        job = client.wait(client.create("synthetic", {"rows": 2000}).id, timeout=60)
        expected = stored_bytes(live, job.id)
        name = job.artifacts[0].name
        (tmp_path / f"{name}.part").write_bytes(expected[:12_345])
        result = client.download(job.id, tmp_path)
        assert proxy.seen("/v1/files/")[0].headers["range"] == "bytes=12345-"
    assert result.path == tmp_path / name
    assert result.path.read_bytes() == expected
    assert not (tmp_path / f"{name}.part").exists()


@sqlite_only
def test_checksum_mismatch_leaves_no_file(server: StartServer, tmp_path: Path) -> None:
    """When the bytes served do not match the announced sha256 (a corrupted artifact),
    download raises ChecksumMismatch and leaves neither the file nor its .part."""
    live = server()
    with Client(live.url, live.token("pat")) as client:
        job = client.wait(client.create("synthetic", {"rows": 500}).id, timeout=60)
        stored = live.runtime.store.get(job.id).artifacts[0]
        path = live.runtime.storage.path_of(stored.storage_key)  # type: ignore[attr-defined]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        target = tmp_path / "orders.csv"
        with pytest.raises(exportd.ChecksumMismatch) as mismatch:
            client.download(job.id, target)
    assert mismatch.value.expected == stored.sha256
    assert mismatch.value.actual == hashlib.sha256(bytes(data)).hexdigest()
    assert not target.exists()
    assert not (tmp_path / "orders.csv.part").exists()


def test_download_of_an_unfinished_job_is_a_conflict(server: StartServer, tmp_path: Path) -> None:
    """Downloading a queued job raises Conflict (not_ready) and writes nothing."""
    live = server(workers=False)
    with Client(live.url, live.token("quinn")) as client:
        job = client.create("synthetic", {"rows": 1})
        with pytest.raises(exportd.Conflict) as not_ready:
            client.download(job.id, tmp_path / "out" / "x.csv")
    assert not_ready.value.code == "not_ready"
    assert not (tmp_path / "out").exists()


# -- the async client -------------------------------------------------------------------


@sqlite_only
def test_async_client_calls_watch_and_download(server: StartServer, tmp_path: Path) -> None:
    """AsyncClient does what Client does: create/get/list/cancel/retry/delete/batch,
    watch to completion and a verified download."""
    live = server()
    token = live.token("rae")

    async def scenario() -> None:
        async with AsyncClient(live.url, token) as client:
            job = await client.create("slow", SLOW)
            assert (await client.get(job.id)).id == job.id
            snapshots = [s async for s in client.watch(job.id, timeout=30)]
            assert snapshots[-1].status == "completed"
            assert done_values(snapshots) == sorted(done_values(snapshots))
            assert len({s.progress.done for s in snapshots}) >= 3
            result = await client.download(job.id, tmp_path / "slow.csv")
            assert result.path.read_bytes() == stored_bytes(live, job.id)

            forever = ExportRequest("slow", {"batches": 1000, "rows_per_batch": 1, "delay": 0.05})
            batch = await client.batch([forever, forever])
            assert len((await client.get_batch(batch.id)).job_ids) == 2
            queued = batch.job_ids[0]
            cancelled = await client.cancel(queued)
            assert cancelled.cancel_requested or cancelled.status == "cancelled"
            await asyncio.wait_for(_until_cancelled(client, queued), 20)
            assert (await client.retry(queued)).status == "queued"
            await client.delete(queued)
            with pytest.raises(exportd.NotFound):
                await client.get(queued)
            page = await client.list(limit=1)
            assert len(page.items) == 1
            everything = [j.id async for j in client.iter_jobs(page_size=1)]
            assert set(everything) == {job.id, *batch.job_ids} - {queued}
            with pytest.raises(exportd.InvalidRequest):
                await client.create("synthetic", {"rows": "many"})
            await client.cancel(batch.job_ids[1])

    asyncio.run(scenario())


async def _until_cancelled(client: AsyncClient, job_id: str) -> None:
    while (await client.get(job_id)).status != "cancelled":
        await asyncio.sleep(0.05)


@sqlite_only
def test_async_events_resume_and_polling_fallback(server: StartServer) -> None:
    """AsyncClient resumes a cut event stream without loss, and falls back to polling
    when the events route is blocked."""
    live = server()
    token = live.token("sam")

    def rule(request: Request) -> bytes | int | None:
        if request.path.endswith("/events") and "block" in request.headers.get("x-test", ""):
            return b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"
        return 700 if request.path.endswith("/events") and request.index == 0 else None

    async def scenario(proxy_url: str) -> None:
        async with AsyncClient(proxy_url, token) as client:
            job = await client.create("slow", SLOW)
            ids = [e.id async for e in client.events(job.id)]
            stored = live.runtime.store.events_after(0, job_id=job.id)
            assert ids == [e.id for e in stored]
        intervals = PollIntervals(low=0.05, high=0.2, warmup=0.5)
        async with AsyncClient(proxy_url, token, poll_intervals=intervals) as client:
            client._http.headers["x-test"] = "block"
            job = await client.create("slow", SLOW)
            snapshots = [s async for s in client.watch(job.id, timeout=30)]
            assert snapshots[-1].status == "completed"

    with CuttingProxy(live.url, rule) as proxy:
        asyncio.run(scenario(proxy.url))
        assert proxy.cuts == 2
        assert len(proxy.seen("/events")) == 3


# -- pure parts -------------------------------------------------------------------------


def test_poll_intervals_are_short_at_both_ends_and_long_in_the_middle() -> None:
    """Adaptive polling: `low` while warming up and near the end, `high` mid-way."""
    intervals = PollIntervals(low=0.2, high=5.0, warmup=2.0)

    def job(percent: float | None, eta: float | None = None) -> Job:
        progress = Progress(done=1, total=100, percent=percent, eta_seconds=eta)
        return Job(id="j", status="running", exporter="x", progress=progress)

    assert intervals.next(job(50.0), elapsed=1.0) == 0.2
    assert intervals.next(job(50.0), elapsed=60.0) == 5.0
    assert intervals.next(job(2.0), elapsed=60.0) < 1.0
    assert intervals.next(job(99.0), elapsed=60.0) < 0.5
    assert intervals.next(job(50.0, eta=1.0), elapsed=60.0) == 0.25
    unknown = [intervals.next(job(None), elapsed=t) for t in (3, 30, 300, 3000)]
    assert unknown == sorted(unknown)
    assert unknown[-1] == 5.0


def test_public_api_is_explicit() -> None:
    """`exportd` exports the clients and every client exception, all under ExportdError."""
    assert {"Client", "AsyncClient", "ExportdError", "JobStalled", "ChecksumMismatch"} <= set(
        exportd.__all__
    )
    for name in exportd.__all__:
        assert hasattr(exportd, name), name
    errors = [getattr(exportd, n) for n in exportd.__all__ if n[0].isupper()]
    exceptions = [e for e in errors if isinstance(e, type) and issubclass(e, BaseException)]
    assert len(exceptions) >= 18
    assert all(issubclass(e, exportd.ExportdError) for e in exceptions)
    assert issubclass(exportd.RateLimited, exportd.ApiError)
    assert issubclass(exportd.JobStalled, exportd.ClientError)
    assert not issubclass(exportd.TransportError, exportd.ApiError)
