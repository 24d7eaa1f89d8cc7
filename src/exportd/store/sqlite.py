"""`SqliteJobStore`: the embedded default. WAL mode with a busy timeout lets one API
process and several worker processes share the file; writes take the lock up front with
`BEGIN IMMEDIATE`, which makes the claim's `UPDATE … RETURNING` atomic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from exportd.jobs import Job
from exportd.store.base import translate
from exportd.store.schema import UtcDateTime
from exportd.store.sql import SqlJobStore

BUSY_TIMEOUT_MS = 30_000
READ_NOW_BUSY_MS = 20
"""How long `read_now` waits for a busy file before giving up (in WAL mode a reader is
almost never kept waiting: only while a checkpoint resets the log)."""

PICK = sa.text(
    """
    SELECT id, owner FROM exportd_jobs INDEXED BY ix_exportd_jobs_queue
    WHERE status = 'queued' AND run_after <= :now
      AND owner NOT IN (
          SELECT owner FROM exportd_jobs WHERE status = 'running'
          GROUP BY owner HAVING count(*) >= :cap
      )
    ORDER BY priority DESC, run_after, id
    LIMIT 1
    """
).bindparams(sa.bindparam("now", type_=UtcDateTime()))
"""The next job in claim order, read from the partial claim-order index (without stats,
SQLite's planner would rather sort the queue)."""


class SqliteJobStore(SqlJobStore):
    dialect_name = "sqlite"

    @classmethod
    def connect(cls, url: str) -> SqliteJobStore:
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            # Enough for the API's thread pool (40) plus worker slots, so connections are
            # reused rather than opened (and configured) per request.
            pool_size=48,
            max_overflow=16,
        )
        _configure(engine, BUSY_TIMEOUT_MS)
        return cls(engine)

    def read_now(self, job_id: str, owner: str | None = None) -> Job:
        """`get` for an event loop's own thread: on a connection of that thread's, which
        waits at most `READ_NOW_BUSY_MS` for a busy file; then `TransientStoreError`
        (read on a thread instead). Never writes."""
        engine = self.__dict__.get("_now_engine")
        if engine is None:
            engine = sa.create_engine(
                self.engine.url,
                connect_args={"check_same_thread": False, "timeout": READ_NOW_BUSY_MS / 1000},
                poolclass=sa.pool.SingletonThreadPool,  # one connection per thread
            )
            _configure(engine, READ_NOW_BUSY_MS)
            self.__dict__["_now_engine"] = engine
        try:
            with engine.connect() as conn, conn.begin():
                return self._load(conn, job_id, owner)
        except sa.exc.DBAPIError as exc:
            raise translate(exc) from exc

    def dispose(self) -> None:
        super().dispose()
        engine = self.__dict__.pop("_now_engine", None)
        if engine is not None:
            engine.dispose()

    def _worth_claiming(self, now: datetime) -> bool:
        return self._has_runnable(now)

    def _pick(self, conn: Connection, now: datetime, owner_cap: int) -> str | None:
        # BEGIN IMMEDIATE already serialises writers, so the cap check cannot race.
        row = conn.execute(PICK, {"now": now, "cap": owner_cap}).first()
        return None if row is None else str(row.id)


def _configure(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("exportd_write") else "BEGIN")
