"""`LeaseKeeper`: one thread per worker that keeps the leases of all its running attempts.

Every `tick` it asks the store, in one statement for all attempts, whether each is still
this worker's and whether a cancel was requested (so a cancel stops an attempt within a
second); every `lease_seconds / 3` that statement also renews the leases. An attempt
whose lease was taken is told to stop (`lease_lost`), as is one that ran past its
`max_runtime_seconds`.

An attempt told to stop is no longer kept: if it is stuck in a call that never reaches a
checkpoint, its lease runs out and the rescuer ends the job (cancelled, if that was
asked) while fencing voids whatever the attempt writes later."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exportd.store import SqlJobStore
from exportd.worker.attempt import Attempt

log = logging.getLogger(__name__)

KEEPER_TICK = 0.2


class LeaseKeeper:
    def __init__(
        self,
        store: SqlJobStore,
        attempts: Callable[[], list[Attempt]],
        *,
        lease_seconds: float,
        tick: float = KEEPER_TICK,
    ) -> None:
        self.store = store
        self.attempts = attempts
        self.lease_seconds = lease_seconds
        self.tick = tick
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renew = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="exportd-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stopping.wait(self.tick):
            try:
                self.keep_once()
            except Exception:  # a transient store error must not kill the keeper
                log.warning("lease keeper: store unavailable", exc_info=True)

    def keep_once(self) -> None:
        """One pass: check (and when due, renew) every running attempt's lease."""
        attempts = [a for a in self.attempts() if a.stop_reason is None and not a.finished.is_set()]
        now = time.monotonic()
        if not attempts:
            self._last_renew = now
            return
        claims = [a.claim for a in attempts]
        if now - self._last_renew >= self.lease_seconds / 3:
            flags = self.store.heartbeat_many(claims, lease_seconds=self.lease_seconds)
            self._last_renew = now
        else:
            flags = self.store.cancel_flags(claims)
        for attempt in attempts:
            cancel = flags.get(attempt.job_id)
            if cancel is None:
                if not attempt.finished.is_set():  # it may have just ended on its own
                    attempt.stop("lease_lost")
            elif cancel:
                attempt.stop("cancelled")
            elif now - attempt.started > attempt.claim.job.max_runtime_seconds:
                attempt.stop("max_runtime_exceeded")
