"""`StoreBase`: what every part of the SQL job store shares — transactions, the
translation of driver errors, retries of transient ones, events and notifications, the
fenced update, and the schema.

Driver errors never leave the store: a deadlock, a serialization failure, a lost
connection or a busy SQLite file becomes `TransientStoreError` (worth another try), any
other database error `StoreError`."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from exportd.errors import JobNotFound, LeaseLost, StoreError, TransientStoreError
from exportd.jobs import Artifact, Claim, Job, Status, utcnow
from exportd.store.rows import artifact_from_row, job_from_row
from exportd.store.schema import (
    SCHEMA_REVISION,
    VERSION_TABLE,
    artifacts,
    job_events,
    jobs,
    metadata,
    owners,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

Listener = Callable[[str, dict[str, Any]], None]
"""Called after commit with a channel (`jobs` or `events`) and a small payload."""

TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"})
"""Serialization failure, deadlock, lock not available, too many connections, and the
server shutting down or starting: the transaction did not happen; try again."""

RETRY_FIRST_SECONDS = 0.05
RETRY_CAP_SECONDS = 2.0


def translate(exc: sa.exc.DBAPIError) -> StoreError:
    """A driver error as the store error it is."""
    orig = exc.orig
    text = " ".join(str(orig).split())[:500]
    state = getattr(orig, "sqlstate", None) or ""
    transient = (
        exc.connection_invalidated
        or isinstance(exc, sa.exc.InterfaceError)
        or state in TRANSIENT_STATES
        or state.startswith("08")
        or _sqlite_busy(orig)
        or (isinstance(exc, sa.exc.OperationalError) and not state and not _is_sqlite(orig))
    )
    if transient:
        return TransientStoreError(f"job store unavailable: {text}")
    return StoreError(f"job store error: {text}")


def _is_sqlite(orig: Any) -> bool:
    return type(orig).__module__.startswith("sqlite3")


def _sqlite_busy(orig: Any) -> bool:
    if not _is_sqlite(orig):
        return False
    name = getattr(orig, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(orig)


@dataclass(frozen=True)
class ClaimRequest:
    """Who claims, and on what terms."""

    worker_id: str
    lease_seconds: float
    owner_cap: int


class Stats:
    """Counters of what the store did (claims taken, owners skipped, retries); safe to
    bump from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


# The statements of the most frequent read (`GET /v1/exports/{id}`, every runner step),
# built once: building a select is most of what SQLAlchemy spends on a query this small.
LOAD_JOB = jobs.select().where(jobs.c.id == sa.bindparam("job_id"))
LOAD_OWNED_JOB = LOAD_JOB.where(jobs.c.owner == sa.bindparam("owner"))
LOAD_ARTIFACTS = (
    artifacts.select()
    .where(artifacts.c.job_id == sa.bindparam("job_id"))
    .order_by(artifacts.c.name)
)


class StoreBase:
    dialect_name = "base"

    def __init__(self, engine: Engine, *, retry_seconds: float = 60.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        """How long a worker's write keeps retrying transient errors before it gives up."""
        self.stats = Stats()
        self._listeners: list[Listener] = []

    # -- transactions ------------------------------------------------------------------

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
            raise translate(exc) from exc
        except sa.exc.TimeoutError as exc:  # no pooled connection came free in time
            raise TransientStoreError(f"job store busy: {exc}") from exc
        for channel, payload in pending:
            for listener in list(self._listeners):
                listener(channel, payload)

    def _retrying(self, operation: Callable[[], T], what: str) -> T:
        """Run `operation`, trying again with jittered exponential backoff while it fails
        with a transient error, for up to `retry_seconds`."""
        delay = RETRY_FIRST_SECONDS
        give_up = time.monotonic() + self.retry_seconds
        while True:
            try:
                return operation()
            except TransientStoreError as exc:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise
                self.stats.add("store_retries")
                log.warning("%s: %s; trying again", what, exc)
                time.sleep(min(left, delay * random.uniform(0.5, 1.0)))
                delay = min(delay * 2, RETRY_CAP_SECONDS)

    def _notify(self, conn: Connection, channel: str, payload: dict[str, Any]) -> None:
        conn.info["exportd_pending"].append((channel, payload))

    def _relax_durability(self, conn: Connection) -> None:
        """For writes whose loss in a crash is harmless (progress, heartbeats)."""

    def _lock_owner_for_create(self, conn: Connection, owner: str) -> None:
        """Serialise the transactions that count and add an owner's active jobs (SQLite's
        `BEGIN IMMEDIATE` already serialises every writer)."""

    def add_listener(self, listener: Listener) -> None:
        """In-process hook for changes made through this store object."""
        self._listeners.append(listener)

    # -- rows ----------------------------------------------------------------------------

    def _event(
        self, conn: Connection, job: Any, type_: str, *, actor: str | None = None, **data: Any
    ) -> None:
        """Append an event for `job` (anything with `id` and `owner`); `actor` says who
        caused it (None: the worker running the job)."""
        job_id = job.id
        owner = job.owner
        event_id = conn.execute(
            job_events.insert()
            .values(
                job_id=job_id,
                owner=owner,
                type=type_,
                data=data,
                created_at=utcnow(),
                actor=actor,
            )
            .returning(job_events.c.id)
        ).scalar_one()
        self._notify(conn, "events", {"job_id": job_id, "owner": owner, "id": event_id})

    def _load(self, conn: Connection, job_id: str, owner: str | None = None) -> Job:
        if owner is None:
            row = conn.execute(LOAD_JOB, {"job_id": job_id}).first()
        else:
            row = conn.execute(LOAD_OWNED_JOB, {"job_id": job_id, "owner": owner}).first()
        if row is None:
            raise JobNotFound(job_id)
        arts = conn.execute(LOAD_ARTIFACTS, {"job_id": job_id}).all()
        return job_from_row(row, tuple(artifact_from_row(a) for a in arts))

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job, with its artifacts; `owner=None` reads any owner's job (admin)."""
        with self._tx() as conn:
            return self._load(conn, job_id, owner)

    @staticmethod
    def _holds(claim: Claim) -> sa.ColumnElement[bool]:
        job_id, attempt, token = claim.fence
        return sa.and_(
            jobs.c.id == job_id,
            jobs.c.attempt == attempt,
            jobs.c.claim_id == token,
            jobs.c.status == Status.RUNNING,
        )

    def _dialect_insert(self, table: sa.Table) -> Any:
        """`INSERT` with the dialect's `ON CONFLICT` clauses (PostgreSQL and SQLite share
        the spelling)."""
        if self.dialect_name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _insert_ignoring_conflicts(self, table: sa.Table) -> sa.Insert:
        insert: sa.Insert = self._dialect_insert(table).on_conflict_do_nothing()
        return insert

    def _add_usage(
        self, conn: Connection, owner: str, size: int, count: int, downloads: int = 0
    ) -> sa.Row[Any]:
        """Add to an owner's stored bytes, files and downloads (negative to remove);
        returns the owner's row as it now is. The row stays locked until commit, so a
        quota check made on it cannot race."""
        insert = self._dialect_insert(owners).values(
            owner=owner,
            bytes_stored=size,
            artifacts=count,
            downloads=downloads,
            storage_quota_bytes=None,
            updated_at=utcnow(),
        )
        added = insert.on_conflict_do_update(
            index_elements=[owners.c.owner],
            set_={
                "bytes_stored": owners.c.bytes_stored + insert.excluded.bytes_stored,
                "artifacts": owners.c.artifacts + insert.excluded.artifacts,
                "downloads": owners.c.downloads + insert.excluded.downloads,
                "updated_at": insert.excluded.updated_at,
            },
        )
        row: sa.Row[Any] = conn.execute(added.returning(*owners.c)).one()
        return row

    def _drop_artifacts(self, conn: Connection, job_ids: list[str]) -> list[Artifact]:
        """Delete the artifact rows of `job_ids` and take them off their owners' usage;
        returns what was deleted (its files are the caller's to remove, after commit)."""
        if not job_ids:
            return []
        owner_of = dict(
            conn.execute(sa.select(jobs.c.id, jobs.c.owner).where(jobs.c.id.in_(job_ids))).all()
        )
        rows = conn.execute(
            artifacts.delete().where(artifacts.c.job_id.in_(job_ids)).returning(*artifacts.c)
        ).all()
        dropped = [artifact_from_row(row) for row in rows]
        totals: dict[str, tuple[int, int]] = {}
        for art in dropped:
            size, count = totals.get(owner_of[art.job_id], (0, 0))
            totals[owner_of[art.job_id]] = (size + art.size, count + 1)
        for owner in sorted(totals):  # one order: transactions never wait on each other
            size, count = totals[owner]
            self._add_usage(conn, owner, -size, -count)
        return dropped

    def _fenced_update(self, conn: Connection, claim: Claim, **values: Any) -> sa.Row[Any]:
        row = conn.execute(
            jobs.update()
            .where(self._holds(claim))
            .values(updated_at=utcnow(), **values)
            .returning(*jobs.c)
        ).first()
        if row is None:
            raise lease_lost(claim)
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


def lease_lost(claim: Claim) -> LeaseLost:
    job_id, attempt, _ = claim.fence
    return LeaseLost(f"job {job_id} attempt {attempt} is no longer held by this worker")
