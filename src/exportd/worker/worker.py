"""`Worker`: claims jobs and runs them on N slots, keeps a rescuer for dead workers'
jobs, and shuts down gracefully.

Threads: one claim loop, which takes as many jobs as there are free slots in one
transaction; N slot threads that run the claimed attempts (a slot whose job completed
claims its next one itself); one `LeaseKeeper` for all of them; the rescuer, which also
runs the sweeps (at start, then every `sweep_interval`).

Shutdown: stop claiming; give running attempts `grace` seconds to finish; then ask the
rest to stop at their next checkpoint and release their leases, so their jobs are queued
again at once instead of after the lease runs out.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable

from exportd.events.wakeup import Waker
from exportd.jobs import RetryPolicy, new_id
from exportd.observability import attempts as observe
from exportd.observability.logs import job_context
from exportd.observability.metrics import record_claim
from exportd.storage import ArtifactStorage, claim_prefix
from exportd.store import ClaimRequest, Rescued, SqlJobStore
from exportd.worker.attempt import Attempt
from exportd.worker.keeper import LeaseKeeper
from exportd.worker.runner import JobRunner
from exportd.worker.sweeper import Sweeper

log = logging.getLogger(__name__)


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-4:]}"


class Worker:
    def __init__(
        self,
        store: SqlJobStore,
        storage: ArtifactStorage,
        runner: JobRunner,
        *,
        concurrency: int = 2,
        owner_cap: int = 3,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
        sweeper: Sweeper | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.runner = runner
        self.concurrency = concurrency
        self.owner_cap = owner_cap
        self.worker_id = worker_id or make_worker_id()
        self.sweeper = sweeper
        self.waker = Waker(poll_interval)
        self._stopping = threading.Event()
        self._free = threading.Condition()
        self._free_slots = concurrency
        self._running: dict[str, Attempt] = {}
        self._ready: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._slot_threads: list[threading.Thread] = []
        self.keeper = LeaseKeeper(store, self._snapshot, lease_seconds=runner.lease_seconds)

    @property
    def lease_seconds(self) -> float:
        return self.runner.lease_seconds

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.runner.retry_policy

    def running(self) -> list[str]:
        with self._free:
            return list(self._running)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.waker.watch(self.store)
        self.keeper.start()
        for index in range(self.concurrency):
            self._slot_threads.append(self._spawn(self._slot_loop, f"slot-{index}"))
        for target, name in ((self._claim_loop, "claim"), (self._rescue_loop, "rescuer")):
            self._threads.append(self._spawn(target, name))
        log.info("worker %s started with %d slots", self.worker_id, self.concurrency)

    @staticmethod
    def _spawn(target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"exportd-{name}", daemon=True)
        thread.start()
        return thread

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, wait up to `grace` for running attempts, release the rest."""
        self._stopping.set()
        self.waker.poke()
        with self._free:
            self._free.notify_all()
        for thread in self._threads:
            thread.join()
        deadline = time.monotonic() + grace
        for attempt in self._snapshot():
            attempt.finished.wait(max(0.0, deadline - time.monotonic()))
        for attempt in self._snapshot():
            attempt.stop("shutdown")
        for attempt in self._snapshot():
            if not attempt.finished.wait(timeout=5):
                self._release_stuck(attempt)
        self.keeper.stop()
        for _ in self._slot_threads:
            self._ready.put(None)
        for thread in self._slot_threads:
            thread.join(timeout=1)
        self.waker.close()
        log.info("worker %s stopped; claim stats: %s", self.worker_id, self.store.stats.snapshot())

    def _snapshot(self) -> list[Attempt]:
        with self._free:
            return list(self._running.values())

    def _release_stuck(self, attempt: Attempt) -> None:
        """The attempt ignored the stop (stuck in a slow call): release its lease anyway;
        fencing makes anything it writes later a no-op."""
        try:
            self.store.release(attempt.claim)
        except Exception:
            log.warning("could not release job %s", attempt.job_id, exc_info=True)

    # -- claiming and running ------------------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            with self._free:
                if self._free_slots < 1:
                    self._free.wait(0.5)
                    continue
                wanted = self._free_slots
            started = time.monotonic()
            try:
                claims = self.store.claim_many(
                    self.worker_id,
                    wanted,
                    lease_seconds=self.lease_seconds,
                    owner_cap=self.owner_cap,
                )
                record_claim(time.monotonic() - started, len(claims))
            except Exception:
                log.warning("claim failed; retrying after a pause", exc_info=True)
                claims = []
            attempts = [self.runner.attempt_for(claim) for claim in claims]
            with self._free:
                self._free_slots -= len(attempts)
                for attempt in attempts:
                    self._running[attempt.job_id] = attempt
            for attempt in attempts:
                self._ready.put(attempt)
            if not claims:
                self.waker.wait()

    def _slot_loop(self) -> None:
        while (attempt := self._ready.get()) is not None:
            following: Attempt | None = attempt
            while following is not None:
                following = self._run(following)

    def _run(self, attempt: Attempt) -> Attempt | None:
        """Run the attempt; returns the next one when its slot claimed it on completion."""
        following = None
        try:
            self.runner.run(attempt, then_claim=self._next_claim)
            if attempt.next_claim is not None:
                following = self.runner.attempt_for(attempt.next_claim)
        except Exception:
            with job_context(attempt.claim.job):
                log.exception("job %s: runner crashed", attempt.job_id)
        finally:
            with self._free:
                self._running.pop(attempt.job_id, None)
                if following is not None:
                    self._running[following.job_id] = following
                else:
                    self._free_slots += 1
                    self._free.notify()
            attempt.finished.set()
            if following is None:
                self.waker.poke()
        return following

    def _next_claim(self) -> ClaimRequest | None:
        """What a completed attempt's slot claims next, once the completion has committed
        (nothing once the worker is stopping)."""
        if self._stopping.is_set():
            return None
        return ClaimRequest(self.worker_id, self.lease_seconds, self.owner_cap)

    # -- rescuing ----------------------------------------------------------------------

    def rescue_once(self) -> int:
        rescued = self.store.rescue_expired(self.retry_policy.delay)
        for item in rescued:
            observe.rescued(item.status)
            self._remove_files_of(item)
            log.warning(
                "job %s: lease of attempt %s expired; now %s",
                item.job_id,
                item.attempt,
                item.status,
            )
        if rescued:
            self.waker.poke()
        return len(rescued)

    def _remove_files_of(self, item: Rescued) -> None:
        """A rescued attempt's partials and any file it published before it died: its
        claim is over, so nothing will ever refer to them (the sweep is the backstop)."""
        if item.claim_id is None:
            return
        try:
            self.storage.discard_partials(item.claim_id)
            self.storage.delete_prefix(claim_prefix(item.owner, item.job_id, item.claim_id))
        except Exception:
            log.warning("could not remove the files of job %s", item.job_id, exc_info=True)

    def sweep_once(self, *, force: bool = False) -> None:
        if self.sweeper is None:
            return
        try:
            self.sweeper.sweep(force=force)
        except Exception:
            log.warning("sweep failed", exc_info=True)

    def _rescue_loop(self) -> None:
        self.sweep_once(force=True)
        interval = max(0.2, min(self.lease_seconds / 2, 15.0))
        next_sweep = time.monotonic() + (self.sweeper.interval if self.sweeper else 0)
        while not self._stopping.wait(interval * random.uniform(0.75, 1.25)):
            try:
                self.rescue_once()
            except Exception:
                log.warning("rescuer pass failed", exc_info=True)
            if self.sweeper is not None and time.monotonic() >= next_sweep:
                self.sweep_once()
                next_sweep = time.monotonic() + self.sweeper.interval
