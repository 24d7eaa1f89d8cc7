"""The transport-free part of `watch`: turning events and polled snapshots into the
snapshots the caller sees, stall and timeout detection, SSE-or-polling, poll intervals."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from exportd.client._exceptions import JobStalled, WatchTimeout
from exportd.client._models import TERMINAL_STATUSES, Event, Job, Progress

SSE_FAILURES_BEFORE_POLLING = 3
IDLE_READ_TIMEOUT = 45.0
"""Reconnect a stream that has been silent this long (the server sends keep-alives)."""


@dataclass(frozen=True)
class PollIntervals:
    """Polling waits between `low` and `high` seconds: `low` during the first `warmup`
    seconds and near the end, up to `high` in the middle of a long job."""

    low: float = 0.25
    high: float = 5.0
    warmup: float = 2.0

    def next(self, job: Job, elapsed: float) -> float:
        if elapsed < self.warmup:
            return self.low
        progress = job.progress
        if job.status == "running" and progress.percent is not None:
            fraction = min(max(progress.percent / 100.0, 0.0), 1.0)
            delay = self.low + (self.high - self.low) * 4 * fraction * (1 - fraction)
            if progress.eta_seconds is not None:
                delay = min(delay, progress.eta_seconds / 4)
        elif job.status == "queued" and job.next_attempt_at is not None:
            delay = (job.next_attempt_at - _now(job.next_attempt_at)).total_seconds()
        else:
            delay = self.low * 1.5 ** math.log2(1 + elapsed)
        return min(max(delay, self.low), self.high)


def _now(like: datetime) -> datetime:
    return datetime.now(like.tzinfo)


def _key(job: Job) -> tuple[Any, ...]:
    p = job.progress
    error = job.error.code if job.error else None
    return (job.status, job.attempt, p.done, p.total, p.message, error, job.cancel_requested)


class Watcher:
    """What one `watch` call knows: the current snapshot, the last event id applied, the
    stall and overall deadlines, and whether SSE still works."""

    def __init__(
        self,
        job_id: str,
        *,
        stall_timeout: float | None,
        timeout: float | None,
        sse: bool,
        intervals: PollIntervals,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.stall_timeout = stall_timeout
        self.timeout = timeout
        self.use_sse = sse
        self.intervals = intervals
        self.clock = clock
        self.started = self.last_change = clock()
        self.job: Job | None = None
        self.last_event_id = 0
        self.sse_failures = 0
        self._yielded: tuple[Any, ...] | None = None

    @property
    def finished(self) -> bool:
        return self.job is not None and self.job.is_terminal and self._yielded == _key(self.job)

    # -- snapshots ------------------------------------------------------------------

    def observe(self, job: Job) -> Job | None:
        """Take a snapshot (from a GET); return it if the caller has not seen it yet."""
        if self.job is None or _key(job) != _key(self.job):
            self.last_change = self.clock()
        self.job = job
        return self._emit()

    def apply(self, event: Event) -> tuple[Job | None, bool]:
        """Apply one new event: returns (snapshot to yield, whether the job must be re-read).
        Progress events update the snapshot in place; any other event is a state change,
        for which the job is read again."""
        if event.type != "progress":
            return None, True
        assert self.job is not None
        if self.job.is_terminal or int(event.data.get("done", 0)) < self.job.progress.done:
            return None, False
        progress = _progress_from(event, self.job)
        updated = replace(self.job, progress=progress)
        if _key(updated) != _key(self.job):
            self.last_change = self.clock()
        self.job = updated
        return self._emit(), False

    def _emit(self) -> Job | None:
        assert self.job is not None
        key = _key(self.job)
        if key == self._yielded:
            return None
        self._yielded = key
        return self.job

    # -- deadlines ------------------------------------------------------------------

    def check(self) -> None:
        """Raise `WatchTimeout` or `JobStalled` when their time has come."""
        assert self.job is not None
        now = self.clock()
        if self.timeout is not None and now - self.started >= self.timeout:
            raise WatchTimeout(self.job, self.timeout)
        if self.stall_timeout is not None and now - self.last_change >= self.stall_timeout:
            raise JobStalled(self.job, self.stall_timeout)

    def _until_deadline(self) -> float:
        now, left = self.clock(), math.inf
        if self.timeout is not None:
            left = min(left, self.started + self.timeout - now)
        if self.stall_timeout is not None:
            left = min(left, self.last_change + self.stall_timeout - now)
        return max(left, 0.0)

    def stream_timeout(self) -> httpx.Timeout:
        """A stream silent for longer than this cannot be making progress in time."""
        read = IDLE_READ_TIMEOUT
        if self.stall_timeout is not None:
            read = min(read, self.stall_timeout)
        if self.timeout is not None:
            read = min(read, max(self.started + self.timeout - self.clock(), 0.0))
        return httpx.Timeout(10.0, read=read + 0.05)

    def poll_delay(self) -> float:
        assert self.job is not None
        delay = self.intervals.next(self.job, self.clock() - self.started)
        return min(delay, self._until_deadline() + 0.01)

    # -- SSE or polling ---------------------------------------------------------------

    def sse_unavailable(self) -> None:
        """The server refused the event stream: poll from now on."""
        self.use_sse = False

    def received(self, event: Event) -> bool:
        """Record an event's id; False when it was already seen (a replay)."""
        if event.id <= self.last_event_id:
            return False
        self.last_event_id = event.id
        self.sse_failures = 0
        return True

    def sse_dropped(self, received: bool) -> float:
        """The stream ended or broke; returns how long to wait before reconnecting.
        After a few connections in a row without any event, switch to polling."""
        if received:
            return 0.0
        self.sse_failures += 1
        if self.sse_failures >= SSE_FAILURES_BEFORE_POLLING:
            self.use_sse = False
            return 0.0
        return min(0.25 * 2.0 ** (self.sse_failures - 1), 2.0, self._until_deadline())

    def stream_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return headers


def _progress_from(event: Event, job: Job) -> Progress:
    data = event.data
    done, total = int(data.get("done") or 0), data.get("total")
    rate = eta = None
    at = data.get("at")
    if job.started_at is not None and isinstance(at, str) and done > 0:
        elapsed = (datetime.fromisoformat(at) - job.started_at).total_seconds()
        if elapsed > 0:
            rate = round(done / elapsed, 2)
            if total is not None:
                eta = round(max(int(total) - done, 0) / rate, 1)
    percent = data.get("percent")
    return Progress(
        done=done,
        total=int(total) if total is not None else None,
        unit=str(data.get("unit") or job.progress.unit),
        percent=float(percent) if isinstance(percent, int | float) else None,
        message=data.get("message"),
        rate=rate,
        eta_seconds=eta,
    )


def is_terminal_event(event: Event) -> bool:
    return event.type != "progress" and event.data.get("status") in TERMINAL_STATUSES


def is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return response.status_code == 200 and content_type.startswith("text/event-stream")
