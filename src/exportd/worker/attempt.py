"""`Attempt`: the state of one running attempt, shared by the runner thread (which writes
rows) and the worker's `LeaseKeeper` (which renews the lease and watches for cancel
requests).

The runner calls `checkpoint()` between chunks: it raises `ExportCancelled` as soon as the
attempt must stop, and writes progress at most every `progress_interval` seconds."""

from __future__ import annotations

import logging
import threading
import time

from exportd.errors import ExportCancelled, LeaseLost, StoreError
from exportd.jobs import Claim, Progress
from exportd.store import SqlJobStore

log = logging.getLogger(__name__)


class Attempt:
    def __init__(
        self,
        store: SqlJobStore,
        claim: Claim,
        *,
        lease_seconds: float,
        progress_interval: float,
    ) -> None:
        self.store = store
        self.claim = claim
        self.job_id = claim.job.id
        self.attempt = claim.job.attempt
        self.owner = claim.job.owner
        self.lease_seconds = lease_seconds
        self.progress_interval = progress_interval
        self.started = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self.total_estimated = False
        self.unit = "rows"
        self.message: str | None = None
        self._stop_reason: str | None = None
        self._last_flush = 0.0
        self._dirty = False
        self.finished = threading.Event()
        self.next_claim: Claim | None = None
        """The worker's next job, when this attempt's completion claimed it."""

    # -- ExportContext -------------------------------------------------------------

    def set_total(self, total: int | None, unit: str = "rows", *, estimated: bool = False) -> None:
        self.total, self.unit, self._dirty = total, unit, True
        self.total_estimated = estimated and total is not None

    def final_progress(self) -> Progress:
        """The progress stored with the finished job: an estimated total becomes the
        number actually written."""
        if self.total_estimated:
            return Progress(self.done, self.done, self.unit, self.message)
        return self.progress

    def step(self, message: str) -> None:
        self.message, self._dirty = message[:500], True

    def advance(self, count: int) -> None:
        self.done += count
        self._dirty = True

    def checkpoint(self) -> None:
        if self._stop_reason is not None:
            raise ExportCancelled(self._stop_reason)
        if self._dirty and time.monotonic() - self._last_flush >= self.progress_interval:
            self.flush()

    # -- progress and stopping -----------------------------------------------------------

    @property
    def progress(self) -> Progress:
        return Progress(self.done, self.total, self.unit, self.message)

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        self._dirty = False
        try:
            if self.store.report_progress(self.claim, self.progress):
                self.stop("cancelled")
        except LeaseLost:
            self.stop("lease_lost")
        except StoreError as exc:  # progress can wait for the store; the export goes on
            self._dirty = True
            log.warning("job %s: progress not stored: %s", self.job_id, exc)
        if self._stop_reason is not None:
            raise ExportCancelled(self._stop_reason)

    def stop(self, reason: str) -> None:
        """Ask the attempt to stop at its next checkpoint. The first reason wins."""
        if self._stop_reason is None:
            self._stop_reason = reason

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason
