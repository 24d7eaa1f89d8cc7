"""`AttemptStore`: the writes a worker makes — claim, heartbeat, progress, and the end of
an attempt (complete, fail, cancelled, released) — and the rescue of dead workers' jobs.

Contract for every method that takes a `Claim`: the write is fenced by `(job id,
attempt, claim id)` and raises `LeaseLost` when it matches no row, so a worker whose
lease was taken can never overwrite the job. The end of an attempt commits in a
transaction of its own and is retried on transient errors for up to `retry_seconds`; a
retry that finds the job already ended by this very claim (the first try committed but
its acknowledgement was lost with the connection) returns that as a success. Every
status change appends to `job_events` in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.errors import JobNotFound, LeaseLost, QuotaExceeded
from exportd.jobs import (
    Artifact,
    Claim,
    ErrorInfo,
    Job,
    JobError,
    Progress,
    Status,
    new_claim_id,
    utcnow,
)
from exportd.store.base import ClaimRequest, lease_lost
from exportd.store.outbox import OutboxStore, job_summary
from exportd.store.rows import completed_data, job_from_row, progress_data
from exportd.store.schema import artifacts, jobs

QUEUED_LITERAL: sa.ColumnElement[str] = sa.literal_column("'queued'")
"""Inlined, so SQLite sees that the partial claim-order index applies."""


@dataclass(frozen=True)
class Rescued:
    """A running attempt whose lease ran out, and what became of the job. `claim_id`
    names the dead attempt's storage keys and partials, which are now garbage."""

    job_id: str
    attempt: int
    status: Status
    owner: str
    claim_id: str | None


def check_quota(stored: int, own_quota: int | None, default: int | None) -> None:
    """Raise `QuotaExceeded` if `stored` bytes are over the owner's quota."""
    limit = own_quota if own_quota is not None else default
    if limit is not None and stored > limit:
        raise QuotaExceeded(
            f"the export would take the owner's stored files to {stored:,} bytes; "
            f"the quota is {limit:,}"
        )


class AttemptStore(OutboxStore):
    # -- claiming ------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_seconds: float, owner_cap: int) -> Claim | None:
        """Atomically take the next runnable job: highest priority, then earliest
        `run_after`, then oldest; owners already running `owner_cap` jobs are skipped."""
        taken = self.claim_many(worker_id, 1, lease_seconds=lease_seconds, owner_cap=owner_cap)
        return taken[0] if taken else None

    def claim_many(
        self, worker_id: str, limit: int, *, lease_seconds: float, owner_cap: int
    ) -> list[Claim]:
        """Take up to `limit` runnable jobs, in claim order (as if `claim` were called
        `limit` times); the owner cap holds exactly. A claim never waits for a lock
        another claimer can hold. Each job is taken atomically; PostgreSQL commits the
        claim in rounds (see `PostgresJobStore._claim_in`)."""
        if limit < 1 or not self._worth_claiming(utcnow()):
            return []
        request = ClaimRequest(worker_id, lease_seconds, owner_cap)
        with self._tx(write=True) as conn:
            claims = self._claim_in(conn, request, limit)
        self.stats.add("claimed", len(claims))
        return claims

    def _claim_in(self, conn: Connection, request: ClaimRequest, limit: int) -> list[Claim]:
        """Claim up to `limit` jobs, one at a time (the transaction holds the write lock,
        so the cap check cannot race). The lease starts now: after the lock was taken."""
        now = utcnow()
        claims: list[Claim] = []
        for _ in range(limit):
            job_id = self._pick(conn, now, request.owner_cap)
            if job_id is None:
                if self._has_runnable_in(conn, now):
                    self.stats.add("capped")
                break
            claim_id = new_claim_id()
            row = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == Status.QUEUED)
                .values(
                    status=Status.RUNNING,
                    attempt=jobs.c.attempt + 1,
                    lease_owner=request.worker_id,
                    claim_id=claim_id,
                    lease_expires_at=now + timedelta(seconds=request.lease_seconds),
                    started_at=now,
                    finished_at=None,
                    updated_at=now,
                )
                .returning(*jobs.c)
            ).first()
            if row is None:
                break
            job = job_from_row(row)
            self._event(
                conn,
                job,
                "started",
                status=Status.RUNNING,
                attempt=job.attempt,
                worker=request.worker_id,
            )
            claims.append(Claim(job, claim_id))
        return claims

    def _worth_claiming(self, now: datetime) -> bool:
        """Whether to open a claim transaction at all (dialects with costly write locks
        look first)."""
        return True

    def _has_runnable(self, now: datetime) -> bool:
        """A read-only look, so an idle claim never takes the write lock."""
        with self._tx() as conn:
            return self._has_runnable_in(conn, now)

    def _has_runnable_in(self, conn: Connection, now: datetime) -> bool:
        query = sa.select(jobs.c.id).where(jobs.c.status == QUEUED_LITERAL, jobs.c.run_after <= now)
        return conn.execute(query.limit(1)).first() is not None

    def _pick(self, conn: Connection, now: datetime, owner_cap: int) -> str | None:
        raise NotImplementedError

    # -- while running -------------------------------------------------------------------

    def heartbeat(self, claim: Claim, *, lease_seconds: float) -> bool:
        """Extend the lease; returns whether a cancel was requested."""
        with self._tx(write=True) as conn:
            self._relax_durability(conn)
            row = self._fenced_update(
                conn, claim, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds)
            )
            return bool(row.cancel_requested)

    def heartbeat_many(self, claims: Sequence[Claim], *, lease_seconds: float) -> dict[str, bool]:
        """Extend every lease still held, in one statement; returns, for each job whose
        lease is still this worker's, whether a cancel was requested (a lost job is
        missing from the result)."""
        if not claims:
            return {}
        now = utcnow()
        with self._tx(write=True) as conn:
            self._relax_durability(conn)
            rows = conn.execute(
                jobs.update()
                .where(self._held(claims))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
                .returning(jobs.c.id, jobs.c.cancel_requested)
            ).all()
        return {row.id: bool(row.cancel_requested) for row in rows}

    def cancel_flags(self, claims: Sequence[Claim]) -> dict[str, bool]:
        """Like `heartbeat_many` without renewing: one read for all of a worker's jobs."""
        if not claims:
            return {}
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(jobs.c.id, jobs.c.cancel_requested).where(self._held(claims))
            ).all()
        return {row.id: bool(row.cancel_requested) for row in rows}

    @staticmethod
    def _held(claims: Sequence[Claim]) -> sa.ColumnElement[bool]:
        return sa.and_(
            jobs.c.status == Status.RUNNING,
            sa.tuple_(jobs.c.id, jobs.c.attempt, jobs.c.claim_id).in_(
                [claim.fence for claim in claims]
            ),
        )

    def report_progress(self, claim: Claim, progress: Progress, *, event: bool = True) -> bool:
        """Store progress (and append a `progress` event); returns whether a cancel was
        requested."""
        with self._tx(write=True) as conn:
            self._relax_durability(conn)
            row = self._fenced_update(
                conn,
                claim,
                progress_done=progress.done,
                progress_total=progress.total,
                progress_unit=progress.unit,
                progress_message=progress.message,
            )
            if event:
                self._event(conn, row, "progress", **progress_data(progress))
            return bool(row.cancel_requested)

    # -- ending an attempt ---------------------------------------------------------------

    def _end(
        self,
        claim: Claim,
        what: str,
        write: Callable[[Connection], Job],
        settled: Callable[[Job], bool],
    ) -> Job:
        """Commit `write` in its own transaction, retrying transient errors. After a
        retry, `LeaseLost` may mean that an earlier try committed: if the job shows this
        claim's outcome (`settled`), that is the result."""
        tries = 0

        def once() -> Job:
            nonlocal tries
            tries += 1
            try:
                with self._tx(write=True) as conn:
                    return write(conn)
            except LeaseLost:
                earlier = self._settled_by(claim, settled) if tries > 1 else None
                if earlier is None:
                    raise
                return earlier

        return self._retrying(once, f"job {claim.job.id}: {what}")

    def _settled_by(self, claim: Claim, settled: Callable[[Job], bool]) -> Job | None:
        try:
            job = self.get(claim.job.id)
        except JobNotFound:
            return None
        # The rescuer clears `claim_id`: only this claim's own write leaves it set on a
        # job that is no longer running.
        if job.claim_id == claim.token and job.status != Status.RUNNING and settled(job):
            return job
        return None

    def complete(
        self,
        claim: Claim,
        produced: Sequence[Artifact],
        progress: Progress,
        *,
        expires_at: datetime | None = None,
        quota: int | None = None,
    ) -> Job:
        """The attempt succeeded: record its artifacts (their files expire at
        `expires_at`) and finish the job, atomically and on its own (nothing that happens
        afterwards can undo it). The owner's stored bytes grow by the artifacts' sizes;
        if that takes them past their quota (the owner's own, else `quota`), nothing is
        recorded and `QuotaExceeded` is raised."""
        return self._end(
            claim,
            "complete",
            lambda conn: self._complete_in(conn, claim, produced, progress, expires_at, quota),
            lambda job: job.status == Status.COMPLETED,
        )

    def _complete_in(
        self,
        conn: Connection,
        claim: Claim,
        produced: Sequence[Artifact],
        progress: Progress,
        expires_at: datetime | None,
        quota: int | None,
    ) -> Job:
        now = utcnow()
        row = self._fenced_update(
            conn,
            claim,
            status=Status.COMPLETED,
            finished_at=now,
            expires_at=expires_at,
            lease_owner=None,
            lease_expires_at=None,
            progress_done=progress.done,
            progress_total=progress.total,
            progress_unit=progress.unit,
            progress_message=progress.message,
            error_code=None,
            error_message=None,
            error_retryable=None,
        )
        for art in produced:
            conn.execute(
                artifacts.insert().values(
                    job_id=art.job_id,
                    name=art.name,
                    storage_key=art.storage_key,
                    size=art.size,
                    sha256=art.sha256,
                    content_type=art.content_type,
                    rows=art.rows,
                    downloads=0,
                    created_at=now,
                )
            )
        usage = self._add_usage(conn, row.owner, sum(a.size for a in produced), len(produced))
        check_quota(usage.bytes_stored, usage.storage_quota_bytes, quota)
        summary = job_summary(row, Status.COMPLETED, produced=produced, progress=progress)
        self._queue_messages(conn, row, Status.COMPLETED, summary)
        self._event(conn, row, "completed", **completed_data(row.attempt, progress, produced))
        return job_from_row(row, tuple(produced))

    def fail(self, claim: Claim, error: ErrorInfo, *, retry_at: datetime | None) -> Job:
        """End the attempt with `error`: back to the queue at `retry_at`, or failed for
        good when `retry_at` is None."""
        status = Status.QUEUED if retry_at is not None else Status.FAILED

        def write(conn: Connection) -> Job:
            values: dict[str, Any] = dict(
                status=status,
                lease_owner=None,
                lease_expires_at=None,
                error_code=error.code,
                error_message=error.message,
                error_retryable=error.retryable,
            )
            if retry_at is not None:
                values["run_after"] = retry_at
            else:
                values["finished_at"] = utcnow()
            row = self._fenced_update(conn, claim, **values)
            err = {"code": error.code, "message": error.message, "retryable": error.retryable}
            if retry_at is not None:
                self._notify(conn, "jobs", {"id": row.id})
                self._event(
                    conn,
                    row,
                    "retry_scheduled",
                    status=status,
                    attempt=row.attempt,
                    error=err,
                    next_attempt_at=retry_at.isoformat(),
                )
            else:
                failure = JobError(error.code, error.message, error.retryable)
                summary = job_summary(row, Status.FAILED, error=failure)
                self._queue_messages(conn, row, Status.FAILED, summary)
                self._event(conn, row, "failed", status=status, attempt=row.attempt, error=err)
            return job_from_row(row)

        return self._end(
            claim,
            "fail",
            write,
            lambda job: (
                job.status == status and job.error is not None and job.error.code == error.code
            ),
        )

    def mark_cancelled(self, claim: Claim) -> Job:
        """The running attempt stopped because a cancel was requested."""

        def write(conn: Connection) -> Job:
            row = self._fenced_update(
                conn,
                claim,
                status=Status.CANCELLED,
                finished_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
            self._queue_messages(conn, row, Status.CANCELLED, job_summary(row, Status.CANCELLED))
            self._event(conn, row, "cancelled", status=Status.CANCELLED, attempt=row.attempt)
            return job_from_row(row)

        return self._end(claim, "cancel", write, lambda job: job.status == Status.CANCELLED)

    def release(self, claim: Claim) -> Job:
        """Give the job back (worker shutting down): queued again at once, and the
        interrupted attempt is not counted against `max_attempts`. Its next claim gets a
        new claim id, so nothing the interrupted attempt may still write can meet it."""

        def write(conn: Connection) -> Job:
            row = self._fenced_update(
                conn,
                claim,
                status=Status.QUEUED,
                attempt=jobs.c.attempt - 1,
                run_after=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
            self._notify(conn, "jobs", {"id": row.id})
            self._event(conn, row, "released", status=Status.QUEUED, attempt=row.attempt)
            return job_from_row(row)

        return self._end(claim, "release", write, lambda job: job.status == Status.QUEUED)

    # -- rescuing --------------------------------------------------------------------------

    def rescue_expired(self, retry_delay: Callable[[int], float]) -> list[Rescued]:
        """Put back running jobs whose lease ran out. The lost attempt counts: the job is
        queued after `retry_delay(attempt)` seconds, or failed with `worker_lost` when its
        attempts are used up (cancelled if a cancel was pending). The claim id is
        cleared: the dead attempt's files are garbage from now on."""
        now = utcnow()
        rescued: list[Rescued] = []
        with self._tx(write=True) as conn:
            for row in conn.execute(self._expired(now)).all():
                outcome = self._rescue_one(conn, row, now, retry_delay)
                if outcome is not None:
                    rescued.append(outcome)
        self.stats.add("rescued", len(rescued))
        return rescued

    def _expired(self, now: datetime) -> sa.Select[Any]:
        return (
            jobs.select()
            .where(jobs.c.status == Status.RUNNING, jobs.c.lease_expires_at < now)
            .order_by(jobs.c.lease_expires_at)
            .limit(500)
        )

    def _rescue_one(
        self,
        conn: Connection,
        row: sa.Row[Any],
        now: datetime,
        retry_delay: Callable[[int], float],
    ) -> Rescued | None:
        message = f"the worker running attempt {row.attempt} stopped renewing its lease"
        values: dict[str, Any] = dict(
            lease_owner=None, lease_expires_at=None, claim_id=None, updated_at=now
        )
        if row.cancel_requested:
            values.update(status=Status.CANCELLED, finished_at=now)
        else:
            values.update(error_code="worker_lost", error_message=message, error_retryable=True)
            if row.attempt >= row.max_attempts:
                values.update(status=Status.FAILED, finished_at=now)
            else:
                when = now + timedelta(seconds=retry_delay(row.attempt))
                values.update(status=Status.QUEUED, run_after=when)
        updated = conn.execute(
            jobs.update()
            .where(
                jobs.c.id == row.id,
                jobs.c.claim_id == row.claim_id,
                jobs.c.status == Status.RUNNING,
            )
            .values(**values)
        )
        if updated.rowcount != 1:
            return None
        status = values["status"]
        if status != Status.QUEUED:
            error = None
            if status == Status.FAILED:
                error = JobError("worker_lost", message, True)
            self._queue_messages(conn, row, status, job_summary(row, status, error=error))
        self._event(
            conn, row, "rescued", status=status, attempt=row.attempt, error_code="worker_lost"
        )
        if status == Status.QUEUED:
            self._notify(conn, "jobs", {"id": row.id})
        return Rescued(row.id, row.attempt, status, row.owner, row.claim_id)


__all__ = ["AttemptStore", "ClaimRequest", "Rescued", "lease_lost"]
