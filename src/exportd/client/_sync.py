"""`Client`: the blocking client. Requests are built and read by `_core`; watching and
downloading keep their state in `_watch` and `_download`; this module only sends and sleeps."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from exportd.client import _core
from exportd.client._core import Call, RetryPolicy
from exportd.client._download import PartFile, ProgressCallback, Transfer, target_path
from exportd.client._exceptions import (
    ChecksumMismatch,
    DownloadError,
    JobCancelled,
    JobFailed,
    TransportError,
)
from exportd.client._models import (
    Batch,
    DownloadResult,
    Event,
    ExporterInfo,
    ExportRequest,
    HistoryEntry,
    HistoryPage,
    Job,
    JobPage,
    Link,
)
from exportd.client._sse import SSEDecoder, to_event
from exportd.client._watch import PollIntervals, Watcher, is_event_stream, is_terminal_event

T = TypeVar("T")

__all__ = ["Client"]


class Client:
    """A client of an exportd server.

    `url` and `token` default to `EXPORTD_URL` and `EXPORTD_TOKEN` (then
    `http://127.0.0.1:8000`). Idempotent requests are retried `retries` times after a
    connection error or a 503; `create` is idempotent through an `Idempotency-Key`.
    `sse=False` makes `watch` poll instead of following the event stream.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        sse: bool = True,
        poll_intervals: PollIntervals | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, token = _core.resolve_connection(url, token)
        self.sse = sse
        self.poll_intervals = poll_intervals or PollIntervals()
        self._retry = RetryPolicy(retries)
        self._http = httpx.Client(
            base_url=self.url,
            headers=_core.default_headers(token),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                )
            except httpx.HTTPError as exc:
                if not self._retry.retry_error(call, exc, attempt):
                    raise _core.transport_error(exc) from exc
            else:
                if not self._retry.retry_response(call, response, attempt):
                    return call.finish(response)
            time.sleep(self._retry.delay(attempt, response))
            attempt += 1

    # -- jobs -----------------------------------------------------------------------

    def create(
        self,
        exporter: str,
        params: Mapping[str, Any] | None = None,
        *,
        format: str = "csv",
        compression: str = "none",
        options: Mapping[str, Any] | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        filename: str | None = None,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Job:
        """Queue an export and return the job (`status` "queued"); `labels` (up to 16
        `key: value` pairs) are kept on the job and can be listed by."""
        return self._send(
            _core.create_call(
                exporter,
                params,
                format=format,
                compression=compression,
                options=options,
                priority=priority,
                max_attempts=max_attempts,
                filename=filename,
                ttl_seconds=ttl_seconds,
                idempotency_key=idempotency_key,
                labels=labels,
            )
        )

    def get(self, job_id: str) -> Job:
        return self._send(_core.get_call(job_id))

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        exporter: str | None = None,
        batch_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        label: Mapping[str, str] | None = None,
    ) -> JobPage:
        """One page of the caller's jobs, newest first; with `label`, only jobs carrying
        every one of those labels."""
        return self._send(
            _core.list_call(
                status=status,
                exporter=exporter,
                batch_id=batch_id,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                cursor=cursor,
                label=label,
            )
        )

    def iter_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        exporter: str | None = None,
        batch_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        label: Mapping[str, str] | None = None,
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetching pages as they are consumed."""
        statuses = [status] if isinstance(status, str) else builtins.list(status or ())
        cursor: str | None = None
        while True:
            page = self.list(
                status=statuses,
                exporter=exporter,
                batch_id=batch_id,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
                label=label,
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def history(self, job_id: str, *, after: int = 0, limit: int = 100) -> HistoryPage:
        """One page of the job's events, oldest first, after event id `after`: what
        happened, when, and who caused it."""
        return self._send(_core.history_call(job_id, after=after, limit=limit))

    def iter_history(
        self, job_id: str, *, after: int = 0, page_size: int = 200
    ) -> Iterator[HistoryEntry]:
        """Every event of the job's history after `after`, fetching pages as consumed."""
        cursor: int | None = after
        while cursor is not None:
            page = self.history(job_id, after=cursor, limit=page_size)
            yield from page.items
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask a running one to stop."""
        return self._send(_core.cancel_call(job_id))

    def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again."""
        return self._send(_core.retry_call(job_id))

    def delete(self, job_id: str) -> None:
        """Cancel the job if needed, then remove it and its files."""
        self._send(_core.delete_call(job_id))

    def batch(self, requests: Sequence[ExportRequest | Mapping[str, Any]]) -> Batch:
        """Queue several exports at once, all or none."""
        return self._send(_core.batch_call(requests))

    def get_batch(self, batch_id: str) -> Batch:
        return self._send(_core.get_batch_call(batch_id))

    def exporters(self) -> builtins.list[ExporterInfo]:
        return self._send(_core.exporters_call())

    # -- events and watching ----------------------------------------------------------

    def events(self, job_id: str, *, after: int = 0) -> Generator[Event, None, None]:
        """The job's events after event id `after`, as they happen, until its terminal
        event; a dropped connection is resumed with `Last-Event-ID`, so no event is lost
        or repeated."""
        cursor = Watcher(
            job_id, stall_timeout=None, timeout=None, sse=True, intervals=self.poll_intervals
        )
        cursor.last_event_id = after
        with closing(self._stream(job_id, cursor, strict=True)) as stream:
            for event in stream:
                if event is not None:
                    yield event

    def _stream(
        self, job_id: str, cursor: Watcher, *, strict: bool
    ) -> Generator[Event | None, None, None]:
        """New events of the job's stream, reconnecting after drops; None whenever
        deadlines should be checked. Ends after the terminal event, or when SSE does not
        work (then `cursor.use_sse` is False; with `strict`, it raises instead)."""
        path = _core.events_path(job_id)
        failure: Exception | None = None
        while cursor.use_sse:
            received = False
            try:
                with self._http.stream(
                    "GET", path, headers=cursor.stream_headers(), timeout=cursor.stream_timeout()
                ) as response:
                    if not is_event_stream(response):
                        response.read()
                        if strict:
                            raise _core.api_error(response)
                        cursor.sse_unavailable()
                        return
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        sse = decoder.feed(line)
                        event = to_event(sse) if sse is not None else None
                        if event is None or not cursor.received(event):
                            yield None
                            continue
                        received = True
                        yield event
                        if is_terminal_event(event):
                            return
            except httpx.ReadTimeout:
                yield None
                continue
            except httpx.HTTPError as exc:
                failure = exc
            delay = cursor.sse_dropped(received)
            yield None
            time.sleep(delay)
        if strict:
            raise TransportError(f"the event stream of {job_id} keeps failing") from failure

    def watch(
        self,
        job_id: str,
        *,
        stall_timeout: float | None = None,
        timeout: float | None = None,
    ) -> Iterator[Job]:
        """Snapshots of the job as it changes, ending with its terminal snapshot.

        Follows the event stream (progress events update the snapshot, state changes
        re-read the job), falling back to polling at adaptive intervals when SSE is not
        available. Raises `JobStalled` when nothing changed for `stall_timeout` seconds
        and `WatchTimeout` after `timeout` seconds in all.
        """
        watcher = Watcher(
            job_id,
            stall_timeout=stall_timeout,
            timeout=timeout,
            sse=self.sse,
            intervals=self.poll_intervals,
        )
        first = watcher.observe(self.get(job_id))
        if first is not None:
            yield first
        while not watcher.finished:
            watcher.check()
            if watcher.use_sse:
                yield from self._follow(job_id, watcher)
            else:
                time.sleep(watcher.poll_delay())
                watcher.check()
                snapshot = watcher.observe(self.get(job_id))
                if snapshot is not None:
                    yield snapshot

    def _follow(self, job_id: str, watcher: Watcher) -> Generator[Job, None, None]:
        with closing(self._stream(job_id, watcher, strict=False)) as stream:
            for event in stream:
                if event is not None:
                    snapshot, reread = watcher.apply(event)
                    if reread:
                        snapshot = watcher.observe(self.get(job_id))
                    if snapshot is not None:
                        yield snapshot
                    if watcher.finished:
                        return
                watcher.check()

    def wait(
        self,
        job_id: str,
        *,
        stall_timeout: float | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Watch until the job ends: its completed snapshot, or `JobFailed` /
        `JobCancelled`."""
        job: Job | None = None
        for snapshot in self.watch(job_id, stall_timeout=stall_timeout, timeout=timeout):
            job = snapshot
        assert job is not None
        if job.status == "failed":
            raise JobFailed(job)
        if job.status == "cancelled":
            raise JobCancelled(job)
        return job

    # -- downloads --------------------------------------------------------------------

    def link(self, job_id: str, name: str | None = None) -> Link:
        """A fresh link to the job's file (or the one called `name`) to hand to someone
        else: an absolute URL that needs no token, with its expiry, sha256 and size.
        (On S3 storage with presigned downloads, issuing it counts as a download.)"""
        return self._send(_core.new_link_call(job_id, name))

    def download(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Fetch the job's file (or the one called `name`) to `path` (a file, or a
        directory to put it in) and verify its sha256.

        Bytes go to `<path>.part` first, which is renamed to `path` only once verified;
        an interrupted transfer resumes with `Range`/`If-Range`, also from a `.part` left
        by an earlier call. On a checksum mismatch the part is deleted and
        `ChecksumMismatch` raised.
        """
        job = self.get(job_id)
        artifact = _core.pick_artifact(job, name)
        chosen = name or (artifact.name if artifact else None)
        url = self._send(_core.link_call(job_id, chosen))
        part = PartFile(target_path(path, artifact))
        kept = part.open(resume=True)
        try:
            transfer = Transfer(part, artifact, on_progress)
            try:
                final = self._transfer(job_id, chosen, url, transfer)
            except ChecksumMismatch:
                if not kept:
                    raise
                part.open(resume=False)
                transfer = Transfer(part, artifact, on_progress)
                final = self._transfer(job_id, chosen, url, transfer)
        finally:
            part.close()
        return DownloadResult(final, transfer.result(final))

    def _transfer(self, job_id: str, chosen: str | None, url: str, transfer: Transfer) -> Path:
        links = 1
        while not transfer.complete:
            request = self._http.build_request("GET", url, headers=transfer.headers())
            request.headers.pop("Authorization", None)
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                if transfer.broken():
                    raise _core.transport_error(exc) from exc
                time.sleep(self._retry.delay(transfer.failures - 1))
                continue
            try:
                if response.status_code in (403, 410) and links < 3:
                    url = self._send(_core.link_call(job_id, chosen))
                    links += 1
                    continue
                if response.is_error and response.status_code != 416:
                    response.read()
                    raise _core.api_error(response)
                if transfer.begin(response):
                    for chunk in response.iter_bytes():
                        transfer.write(chunk)
                    transfer.ended()
                elif transfer.broken():
                    raise DownloadError(f"the server keeps refusing the range of {url}")
            except httpx.HTTPError as exc:
                if transfer.broken():
                    raise _core.transport_error(exc) from exc
                time.sleep(self._retry.delay(transfer.failures - 1))
            finally:
                response.close()
        return transfer.finish()
