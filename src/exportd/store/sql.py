"""`SqlJobStore`: the one place that owns the job store's SQL.

Contract for every method that a worker calls with a `Claim`: the write is fenced by
`(job id, attempt, lease token)` and raises `LeaseLost` when it matches no row, so a worker
whose lease was taken from it can never overwrite the job. Every status change appends a
row to `job_events` in the same transaction. Dialect subclasses provide the atomic claim,
transaction start and change notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from exportd.errors import InvalidTransition, JobNotFound, LeaseLost, StoreError
from exportd.jobs import (
    Artifact,
    Claim,
    ErrorInfo,
    Event,
    Job,
    NewJob,
    Progress,
    Status,
    check_transition,
    new_id,
    utcnow,
)
from exportd.store.rows import (
    artifact_from_row,
    completed_data,
    event_from_row,
    job_from_row,
    progress_data,
)
from exportd.store.schema import (
    SCHEMA_REVISION,
    VERSION_TABLE,
    artifacts,
    job_events,
    jobs,
    metadata,
)
from exportd.store.tokens import Batch, TokenStoreMixin

QUEUED_LITERAL: sa.ColumnElement[str] = sa.literal_column("'queued'")
"""Inlined, so SQLite sees that the partial claim-order index applies."""

Listener = Callable[[str, dict[str, Any]], None]
"""Called after commit with a channel (`jobs` or `events`) and a small payload."""


@dataclass(frozen=True)
class Rescued:
    """A running attempt whose lease ran out, and what became of the job."""

    job_id: str
    attempt: int
    status: Status


@dataclass(frozen=True)
class ClaimRequest:
    """Who claims, and on what terms."""

    worker_id: str
    lease_seconds: float
    owner_cap: int


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


class SqlJobStore(TokenStoreMixin):
    dialect_name = "base"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._listeners: list[Listener] = []
        self._local = threading.local()

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """A transaction; `write=True` takes the write lock up front where the dialect
        needs it (SQLite `BEGIN IMMEDIATE`). Notifications go out after commit."""
        pending: list[tuple[str, dict[str, Any]]] = []
        try:
            with self.engine.connect() as conn:
                conn.info["exportd_write"] = write
                conn.info["exportd_pending"] = pending
                with conn.begin():
                    yield conn
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"job store error: {exc.orig}") from exc
        for channel, payload in pending:
            for listener in list(self._listeners):
                listener(channel, payload)

    def _notify(self, conn: Connection, channel: str, payload: dict[str, Any]) -> None:
        conn.info["exportd_pending"].append((channel, payload))

    def _relax_durability(self, conn: Connection) -> None:
        """For writes whose loss in a crash is harmless (progress, heartbeats)."""

    def add_listener(self, listener: Listener) -> None:
        """In-process hook for changes made through this store object."""
        self._listeners.append(listener)

    def _event(self, conn: Connection, job: Job | sa.Row[Any], type_: str, **data: Any) -> None:
        job_id = job.id
        owner = job.owner
        event_id = conn.execute(
            job_events.insert()
            .values(job_id=job_id, owner=owner, type=type_, data=data, created_at=utcnow())
            .returning(job_events.c.id)
        ).scalar_one()
        self._notify(conn, "events", {"job_id": job_id, "owner": owner, "id": event_id})

    def _load(self, conn: Connection, job_id: str, owner: str | None = None) -> Job:
        query = jobs.select().where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        row = conn.execute(query).first()
        if row is None:
            raise JobNotFound(job_id)
        arts = conn.execute(
            artifacts.select().where(artifacts.c.job_id == job_id).order_by(artifacts.c.name)
        ).all()
        return job_from_row(row, tuple(artifact_from_row(a) for a in arts))

    def _fenced_update(self, conn: Connection, claim: Claim, **values: Any) -> sa.Row[Any]:
        job_id, attempt, token = claim.fence
        row = conn.execute(
            jobs.update()
            .where(
                jobs.c.id == job_id,
                jobs.c.attempt == attempt,
                jobs.c.lease_owner == token,
                jobs.c.status == Status.RUNNING,
            )
            .values(updated_at=utcnow(), **values)
            .returning(*jobs.c)
        ).first()
        if row is None:
            raise LeaseLost(f"job {job_id} attempt {attempt} is no longer held by this worker")
        return row

    # -- schema ------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema up to date. Alembic is imported only when there is something
        to migrate: every worker on the embedded SQLite store calls this at start, and
        would otherwise keep Alembic (~8 MB) loaded for nothing."""
        if self.migrations_current():
            return
        from exportd.store.migrate import upgrade

        upgrade(self.engine)

    def migrations_current(self) -> bool:
        return self.schema_revision() == SCHEMA_REVISION

    def schema_revision(self) -> str | None:
        """The revision recorded in Alembic's version table (None before any migration)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(VERSION_TABLE):
                return None
            version = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
            revision: str | None = conn.execute(sa.select(version.c.version_num)).scalar()
            return revision

    def ping(self) -> None:
        with self._tx() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    def truncate_all(self) -> None:
        """Empty every table (tests)."""
        with self._tx(write=True) as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())

    # -- creating and reading ------------------------------------------------------------

    def enqueue(
        self,
        new: NewJob,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Job:
        now = utcnow()
        with self._tx(write=True) as conn:
            job = self._insert(conn, new, now, idempotency_key, request_hash)
            self._notify(conn, "jobs", {"id": job.id})
            self._event(conn, job, "created", status=Status.QUEUED)
        return job

    def enqueue_idempotent(
        self, new: NewJob, *, key: str, request_hash: str, window: timedelta
    ) -> tuple[Job, bool, str | None]:
        """Enqueue unless this owner used `key` within `window`: returns (job, created,
        the stored request hash). A concurrent request with the same key loses the race on
        the unique index and finds the winner's job."""
        for _ in range(3):
            now = utcnow()
            try:
                with self._tx(write=True) as conn:
                    row = conn.execute(
                        sa.select(jobs.c.id, jobs.c.request_hash, jobs.c.created_at).where(
                            jobs.c.owner == new.owner, jobs.c.idempotency_key == key
                        )
                    ).first()
                    if row is not None and row.created_at > now - window:
                        return self._load(conn, row.id), False, row.request_hash
                    if row is not None:  # the key expired: free it for this request
                        conn.execute(
                            jobs.update().where(jobs.c.id == row.id).values(idempotency_key=None)
                        )
                    job = self._insert(conn, new, now, key, request_hash)
                    self._notify(conn, "jobs", {"id": job.id})
                    self._event(conn, job, "created", status=Status.QUEUED)
                    return job, True, request_hash
            except StoreError:
                continue
        raise StoreError("could not store the idempotent request")

    def enqueue_many(
        self, news: Sequence[NewJob], *, batch_owner: str | None = None
    ) -> tuple[Batch | None, list[Job]]:
        """All or nothing: every job is stored, or none is. With `batch_owner`, the jobs
        are grouped in a new batch."""
        now = utcnow()
        with self._tx(write=True) as conn:
            created = []
            batch = self.add_batch(conn, batch_owner, len(news)) if batch_owner else None
            for new in news:
                if batch is not None:
                    new = replace(new, batch_id=batch.id)
                created.append(self._insert(conn, new, now, None, None))
            self._notify(conn, "jobs", {"id": "*"})
            for job in created:
                self._event(conn, job, "created", status=Status.QUEUED)
        return batch, created

    def _insert(
        self,
        conn: Connection,
        new: NewJob,
        now: datetime,
        idempotency_key: str | None,
        request_hash: str | None,
    ) -> Job:
        row = conn.execute(
            jobs.insert()
            .values(
                id=new.id,
                owner=new.owner,
                exporter=new.exporter,
                params=new.params,
                format=new.format,
                compression=new.compression,
                status=Status.QUEUED,
                priority=new.priority,
                attempt=0,
                max_attempts=new.max_attempts,
                run_after=new.run_after or now,
                cancel_requested=False,
                progress_done=0,
                progress_unit="rows",
                max_runtime_seconds=new.max_runtime_seconds,
                filename=new.filename,
                batch_id=new.batch_id,
                ttl_seconds=new.ttl_seconds,
                options=new.options,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                created_at=now,
                updated_at=now,
            )
            .returning(*jobs.c)
        ).one()
        return job_from_row(row)

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job, with its artifacts; `owner=None` reads any owner's job (admin)."""
        with self._tx() as conn:
            return self._load(conn, job_id, owner)

    def find_idempotent(self, owner: str, key: str) -> tuple[Job, str | None] | None:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(jobs.c.id, jobs.c.request_hash).where(
                    jobs.c.owner == owner, jobs.c.idempotency_key == key
                )
            ).first()
            if row is None:
                return None
            return self._load(conn, row.id), row.request_hash

    def list_jobs(
        self,
        owner: str | None,
        *,
        status: Sequence[Status] = (),
        exporter: str | None = None,
        batch_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first. Ids are time-ordered, so the cursor is simply the last id seen."""
        query = jobs.select().order_by(jobs.c.id.desc()).limit(limit + 1)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if status:
            query = query.where(jobs.c.status.in_([str(s) for s in status]))
        if exporter:
            query = query.where(jobs.c.exporter == exporter)
        if batch_id:
            query = query.where(jobs.c.batch_id == batch_id)
        if created_after:
            query = query.where(jobs.c.created_at > created_after)
        if created_before:
            query = query.where(jobs.c.created_at < created_before)
        if cursor:
            query = query.where(jobs.c.id < cursor)
        with self._tx() as conn:
            rows = conn.execute(query).all()
            more = len(rows) > limit
            rows = rows[:limit]
            found = self._artifacts_for(conn, [r.id for r in rows])
        page = [job_from_row(r, found.get(r.id, ())) for r in rows]
        return Page(page, page[-1].id if more and page else None)

    def _artifacts_for(
        self, conn: Connection, job_ids: list[str]
    ) -> dict[str, tuple[Artifact, ...]]:
        if not job_ids:
            return {}
        found: dict[str, list[Artifact]] = {}
        query = artifacts.select().where(artifacts.c.job_id.in_(job_ids))
        for row in conn.execute(query.order_by(artifacts.c.name)):
            found.setdefault(row.job_id, []).append(artifact_from_row(row))
        return {k: tuple(v) for k, v in found.items()}

    def count_active(self, owner: str) -> int:
        with self._tx() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(jobs)
                    .where(
                        jobs.c.owner == owner,
                        jobs.c.status.in_([Status.QUEUED, Status.RUNNING]),
                    )
                ).scalar_one()
            )

    def count_by_status(self, batch_id: str | None = None) -> dict[str, int]:
        query = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
        if batch_id is not None:
            query = query.where(jobs.c.batch_id == batch_id)
        with self._tx() as conn:
            return {status: int(n) for status, n in conn.execute(query)}

    def events_after(
        self,
        after_id: int,
        *,
        job_id: str | None = None,
        owner: str | None = None,
        limit: int = 500,
    ) -> list[Event]:
        query = (
            job_events.select()
            .where(job_events.c.id > after_id)
            .order_by(job_events.c.id)
            .limit(limit)
        )
        if job_id is not None:
            query = query.where(job_events.c.job_id == job_id)
        if owner is not None:
            query = query.where(job_events.c.owner == owner)
        with self._tx() as conn:
            return [event_from_row(r) for r in conn.execute(query)]

    def last_event_id(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.max(job_events.c.id))).scalar() or 0)

    # -- the queue ------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_seconds: float, owner_cap: int) -> Claim | None:
        """Atomically take the next runnable job: highest priority, then earliest
        `run_after`, then oldest; owners already running `owner_cap` jobs are skipped."""
        taken = self.claim_many(worker_id, 1, lease_seconds=lease_seconds, owner_cap=owner_cap)
        return taken[0] if taken else None

    def claim_many(
        self, worker_id: str, limit: int, *, lease_seconds: float, owner_cap: int
    ) -> list[Claim]:
        """Atomically take up to `limit` runnable jobs in one transaction, in claim order
        (as if `claim` were called `limit` times); the owner cap holds exactly."""
        if limit < 1 or not self._worth_claiming(utcnow()):
            return []
        request = ClaimRequest(worker_id, lease_seconds, owner_cap)
        with self._tx(write=True) as conn:
            return self._claim_in(conn, request, limit)

    def _claim_in(
        self, conn: Connection, request: ClaimRequest, limit: int, *, events: bool = True
    ) -> list[Claim]:
        """Claim up to `limit` jobs; with `events=False` their `started` events are left
        to the caller's last statement (see `complete_and_claim`)."""
        token = f"{request.worker_id}/{new_id()[-12:]}"
        now = utcnow()
        claims: list[Claim] = []
        for _ in range(limit):
            job_id = self._pick(conn, now, request.owner_cap)
            if job_id is None:
                break
            row = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == Status.QUEUED)
                .values(
                    status=Status.RUNNING,
                    attempt=jobs.c.attempt + 1,
                    lease_owner=token,
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
            if events:
                self._started_event(conn, job)
            claims.append(Claim(job, token))
        return claims

    def _worth_claiming(self, now: datetime) -> bool:
        """Whether to open a claim transaction at all (dialects with costly write locks
        look first)."""
        return True

    def _has_runnable(self, now: datetime) -> bool:
        """A read-only look, so an idle claim never takes the write lock."""
        with self._tx() as conn:
            query = sa.select(jobs.c.id).where(
                jobs.c.status == QUEUED_LITERAL, jobs.c.run_after <= now
            )
            return conn.execute(query.limit(1)).first() is not None

    def _pick(self, conn: Connection, now: datetime, owner_cap: int) -> str | None:
        raise NotImplementedError

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
            sa.tuple_(jobs.c.id, jobs.c.attempt, jobs.c.lease_owner).in_(
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

    def complete(self, claim: Claim, produced: Sequence[Artifact], progress: Progress) -> Job:
        """The attempt succeeded: record its artifacts and finish the job, atomically."""
        with self._tx(write=True) as conn:
            return self._complete_in(conn, claim, produced, progress)

    def complete_and_claim(
        self,
        claim: Claim,
        produced: Sequence[Artifact],
        progress: Progress,
        request: ClaimRequest,
    ) -> tuple[Job, Claim | None]:
        """`complete`, and `claim` the worker's next job in the same transaction (one
        commit instead of two). The claim comes first, so the finishing job still counts
        against its owner's cap; if the completion is fenced off, nothing is claimed.
        Every event of the transaction (this job's `completed`, the next one's
        `started`) is written by the completion, last: on PostgreSQL the events-order
        lock is then held only while that statement and the commit run, never across a
        round trip to this process (which, with several slots busy, waits for the GIL).

        Lock order: the finishing job's row is locked before the claim takes any
        advisory lock, so this transaction never waits for a row while it holds the
        events-order lock (a concurrent claim may hold that row: PostgreSQL keeps the
        lock a `FOR UPDATE SKIP LOCKED` scan took on a row that turned out to be taken)."""
        with self._tx(write=True) as conn:
            self._hold(conn, claim)
            taken = self._claim_in(conn, request, 1, events=False)
            job = self._complete_in(conn, claim, produced, progress, started=taken)
        return job, taken[0] if taken else None

    def _hold(self, conn: Connection, claim: Claim) -> None:
        """Lock the attempt's row for this transaction; `LeaseLost` if it is not held."""
        job_id, attempt, token = claim.fence
        row = conn.execute(
            sa.select(jobs.c.id)
            .where(
                jobs.c.id == job_id,
                jobs.c.attempt == attempt,
                jobs.c.lease_owner == token,
                jobs.c.status == Status.RUNNING,
            )
            .with_for_update(key_share=True)
        ).first()
        if row is None:
            raise LeaseLost(f"job {job_id} attempt {attempt} is no longer held by this worker")

    def _started_event(self, conn: Connection, job: Job) -> None:
        self._event(conn, job, "started", status=Status.RUNNING, attempt=job.attempt)

    def _complete_in(
        self,
        conn: Connection,
        claim: Claim,
        produced: Sequence[Artifact],
        progress: Progress,
        started: Sequence[Claim] = (),
    ) -> Job:
        """Finish the attempt, then write the `started` events of `started`, jobs this
        transaction claimed quietly."""
        now = utcnow()
        row = self._fenced_update(
            conn,
            claim,
            status=Status.COMPLETED,
            finished_at=now,
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
        self._event(conn, row, "completed", **completed_data(row.attempt, progress, produced))
        for taken in started:
            self._started_event(conn, taken.job)
        return job_from_row(row, tuple(produced))

    def fail(self, claim: Claim, error: ErrorInfo, *, retry_at: datetime | None) -> Job:
        """End the attempt with `error`: back to the queue at `retry_at`, or failed for
        good when `retry_at` is None."""
        status = Status.QUEUED if retry_at is not None else Status.FAILED
        with self._tx(write=True) as conn:
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
                self._event(conn, row, "failed", status=status, attempt=row.attempt, error=err)
            return job_from_row(row)

    def mark_cancelled(self, claim: Claim) -> Job:
        """The running attempt stopped because a cancel was requested."""
        with self._tx(write=True) as conn:
            row = self._fenced_update(
                conn,
                claim,
                status=Status.CANCELLED,
                finished_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
            self._event(conn, row, "cancelled", status=Status.CANCELLED, attempt=row.attempt)
            return job_from_row(row)

    def release(self, claim: Claim) -> Job:
        """Give the job back (worker shutting down): queued again at once, and the
        interrupted attempt is not counted against `max_attempts`."""
        now = utcnow()
        with self._tx(write=True) as conn:
            row = self._fenced_update(
                conn,
                claim,
                status=Status.QUEUED,
                attempt=jobs.c.attempt - 1,
                run_after=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            self._notify(conn, "jobs", {"id": row.id})
            self._event(conn, row, "released", status=Status.QUEUED, attempt=row.attempt)
            return job_from_row(row)

    def rescue_expired(self, retry_delay: Callable[[int], float]) -> list[Rescued]:
        """Put back running jobs whose lease ran out. The lost attempt counts: the job is
        queued after `retry_delay(attempt)` seconds, or failed with `worker_lost` when its
        attempts are used up (cancelled if a cancel was pending)."""
        now = utcnow()
        rescued: list[Rescued] = []
        with self._tx(write=True) as conn:
            for row in conn.execute(self._expired(now)).all():
                outcome = self._rescue_one(conn, row, now, retry_delay)
                if outcome is not None:
                    rescued.append(outcome)
        return rescued

    def _expired(self, now: datetime) -> sa.Select[Any]:
        return jobs.select().where(jobs.c.status == Status.RUNNING, jobs.c.lease_expires_at < now)

    def _rescue_one(
        self,
        conn: Connection,
        row: sa.Row[Any],
        now: datetime,
        retry_delay: Callable[[int], float],
    ) -> Rescued | None:
        message = f"the worker running attempt {row.attempt} stopped renewing its lease"
        values: dict[str, Any] = dict(lease_owner=None, lease_expires_at=None, updated_at=now)
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
            .where(jobs.c.id == row.id, jobs.c.lease_owner == row.lease_owner)
            .values(**values)
        )
        if updated.rowcount != 1:
            return None
        status = values["status"]
        self._event(
            conn, row, "rescued", status=status, attempt=row.attempt, error_code="worker_lost"
        )
        if status == Status.QUEUED:
            self._notify(conn, "jobs", {"id": row.id})
        return Rescued(row.id, row.attempt, status)

    # -- owner actions ----------------------------------------------------------------

    def request_cancel(self, job_id: str, owner: str | None = None) -> Job:
        """A queued job is cancelled at once; a running one is flagged and stopped by its
        runner at the next checkpoint; a finished job is left as it is."""
        now = utcnow()
        with self._tx(write=True) as conn:
            job = self._load(conn, job_id, owner)
            if job.status == Status.QUEUED:
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.status == Status.QUEUED)
                    .values(
                        status=Status.CANCELLED,
                        cancel_requested=True,
                        finished_at=now,
                        updated_at=now,
                    )
                )
                self._event(conn, job, "cancelled", status=Status.CANCELLED)
            elif job.status == Status.RUNNING and not job.cancel_requested:
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id)
                    .values(cancel_requested=True, updated_at=now)
                )
                self._event(conn, job, "cancel_requested", status=Status.RUNNING)
            return self._load(conn, job_id)

    def retry(self, job_id: str, owner: str | None = None) -> Job:
        """Queue a failed or cancelled job again as a new attempt series."""
        now = utcnow()
        with self._tx(write=True) as conn:
            job = self._load(conn, job_id, owner)
            check_transition(job.status, Status.QUEUED)
            if job.status not in (Status.FAILED, Status.CANCELLED):
                raise InvalidTransition("only failed or cancelled jobs can be retried")
            conn.execute(artifacts.delete().where(artifacts.c.job_id == job_id))
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == job.status)
                .values(
                    status=Status.QUEUED,
                    attempt=0,
                    run_after=now,
                    cancel_requested=False,
                    progress_done=0,
                    progress_total=None,
                    progress_message=None,
                    error_code=None,
                    error_message=None,
                    error_retryable=None,
                    started_at=None,
                    finished_at=None,
                    updated_at=now,
                )
            )
            self._event(conn, job, "retried", status=Status.QUEUED)
            self._notify(conn, "jobs", {"id": job_id})
            return self._load(conn, job_id)

    def delete(self, job_id: str, owner: str | None = None) -> Job:
        """Remove a job that is not running, with its events and artifact rows; returns it
        so the caller can delete its files."""
        with self._tx(write=True) as conn:
            job = self._load(conn, job_id, owner)
            if job.status == Status.RUNNING:
                raise InvalidTransition("a running job must be cancelled before it is deleted")
            conn.execute(artifacts.delete().where(artifacts.c.job_id == job_id))
            conn.execute(job_events.delete().where(job_events.c.job_id == job_id))
            conn.execute(jobs.delete().where(jobs.c.id == job_id))
            self._notify(conn, "events", {"job_id": job_id, "owner": job.owner, "id": 0})
            return job

    def count_download(self, job_id: str, name: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(
                artifacts.update()
                .where(artifacts.c.job_id == job_id, artifacts.c.name == name)
                .values(downloads=artifacts.c.downloads + 1)
            )
