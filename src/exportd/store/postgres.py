"""`PostgresJobStore`: the distributed engine.

A claim (of one job or a batch) is two statements: the first picks the next jobs with
`FOR UPDATE SKIP LOCKED` and takes their owners' advisory locks, in one order; the second
re-counts those owners' running jobs under the locks (a fresh snapshot, so concurrent
claimers cannot overshoot the cap), marks running the jobs the cap allows and writes
their `started` events. Every event insert takes a transaction-scoped lock first so event
ids become visible in id order, and sends `NOTIFY` in the same statement. A completion is
one statement (fenced update, artifact rows, event).

Lock order, which keeps claims and completions free of deadlocks: the worker's own job
row, then owner locks, then the events-order lock; a transaction holding the events-order
lock never waits for a row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.errors import LeaseLost
from exportd.jobs import Artifact, Claim, Job, Progress, Status, new_id, utcnow
from exportd.store.rows import completed_data, job_from_mapping
from exportd.store.schema import jobs
from exportd.store.sql import ClaimRequest, SqlJobStore

CHANNELS = {"jobs": "exportd_jobs", "events": "exportd_events"}
EVENTS_LOCK = 0x6578706F7274  # "export"

INSERT_EVENT = sa.text(
    """
    WITH ordered AS (SELECT pg_advisory_xact_lock(:lock)),
    inserted AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
        SELECT :job_id, :owner, :type, CAST(:data AS JSON), :created_at FROM ordered
        RETURNING id
    )
    SELECT id, pg_notify(
        'exportd_events',
        json_build_object(
            'job_id', CAST(:job_id AS TEXT), 'owner', CAST(:owner AS TEXT), 'id', id
        )::text
    ) FROM inserted
    """
)

JOB_COLUMNS = tuple(column.name for column in jobs.columns)
"""The order of the job columns the hot-path statements return."""
_COLUMNS = ", ".join(JOB_COLUMNS)


def _qualified(table: str) -> str:
    return ", ".join(f"{table}.{name}" for name in JOB_COLUMNS)


PICK = """
    SELECT id, owner, priority, run_after,
           pg_advisory_xact_lock(hashtext('exportd:' || owner))
    FROM (
        SELECT id, owner, priority, run_after FROM exportd_jobs
        WHERE status = 'queued' AND run_after <= %(now)s
          AND owner NOT IN (
              SELECT owner FROM exportd_jobs WHERE status = 'running'
              GROUP BY owner HAVING count(*) >= %(cap)s
          )
          AND NOT (owner = ANY(CAST(%(skipped)s AS TEXT[])))
        ORDER BY priority DESC, run_after, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS candidate
    ORDER BY hashtext('exportd:' || owner), owner
    """
"""Up to `limit` candidates, locked; their owners' advisory locks are taken after the
sort (volatile functions are evaluated above it), so claimers lock owners in one order."""

_CANDIDATES = """
    candidate AS (
        SELECT c.id, c.owner,
               row_number() OVER (PARTITION BY c.owner ORDER BY c.ord) AS rank
        FROM unnest(CAST(%(ids)s AS TEXT[]), CAST(%(owners)s AS TEXT[]))
             WITH ORDINALITY AS c(id, owner, ord)
    ),
    running AS (
        SELECT owner, count(*) AS n FROM exportd_jobs
        WHERE status = 'running' AND owner = ANY(CAST(%(owners)s AS TEXT[]))
        GROUP BY owner
    ),
    allowed AS (
        SELECT candidate.id FROM candidate LEFT JOIN running USING (owner)
        WHERE coalesce(running.n, 0) + candidate.rank <= %(cap)s
    ),
    taken AS (
        UPDATE exportd_jobs SET
            status = 'running', attempt = attempt + 1, lease_owner = %(token)s,
            lease_expires_at = %(lease_until)s, started_at = %(now)s, finished_at = NULL,
            updated_at = %(now)s
        WHERE id IN (SELECT id FROM allowed) AND status = 'queued'
        RETURNING {columns}
    )"""

TAKE = (
    "WITH"
    + _CANDIDATES
    + """,
    ordered AS (SELECT pg_advisory_xact_lock(%(lock)s) WHERE EXISTS (SELECT FROM taken)),
    event AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
        SELECT taken.id, taken.owner, 'started',
               json_build_object('status', 'running', 'attempt', taken.attempt), %(now)s
        FROM taken, ordered
        RETURNING id, job_id, owner
    ),
    notified AS (
        SELECT pg_notify('exportd_events', json_build_object(
            'job_id', job_id, 'owner', owner, 'id', id)::text) FROM event
    )
    SELECT {taken_columns}, (SELECT count(*) FROM notified) AS notified FROM taken
    """
).format(columns=_COLUMNS, taken_columns=_qualified("taken"))
"""Takes the candidates the owner cap allows, counted afresh under the owner locks
(this statement's snapshot is newer than the locks), and writes their `started` events."""

TAKE_QUIETLY = ("WITH" + _CANDIDATES + "\n    SELECT {taken_columns} FROM taken").format(
    columns=_COLUMNS, taken_columns=_qualified("taken")
)
"""`TAKE` without the events, for a transaction whose last statement writes them."""

COMPLETE = (
    """
    WITH done AS (
        UPDATE exportd_jobs SET
            status = 'completed', finished_at = %(now)s, updated_at = %(now)s,
            lease_owner = NULL, lease_expires_at = NULL,
            progress_done = %(done)s, progress_total = %(total)s, progress_unit = %(unit)s,
            progress_message = %(message)s,
            error_code = NULL, error_message = NULL, error_retryable = NULL
        WHERE id = %(id)s AND attempt = %(attempt)s AND lease_owner = %(token)s
          AND status = 'running'
        RETURNING {columns}
    ),
    stored AS (
        INSERT INTO exportd_artifacts
            (job_id, name, storage_key, size, sha256, content_type, rows, downloads,
             created_at)
        SELECT done.id, a.name, a.storage_key, a.size, a.sha256, a.content_type, a.rows, 0,
               %(now)s
        FROM done, json_to_recordset(CAST(%(artifacts)s AS JSON)) AS a(
            name TEXT, storage_key TEXT, size BIGINT, sha256 TEXT, content_type TEXT,
            rows BIGINT
        )
    ),
    ordered AS (SELECT pg_advisory_xact_lock(%(lock)s) FROM done),
    event AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
        SELECT e.job_id, e.owner, e.type, e.data, %(now)s
        FROM ordered, (
            SELECT 0 AS n, done.id AS job_id, done.owner, 'completed' AS type,
                   CAST(%(data)s AS JSON) AS data
            FROM done
            UNION ALL
            SELECT s.n, s.job_id, s.owner, 'started',
                   json_build_object('status', 'running', 'attempt', s.attempt)
            FROM ROWS FROM (
                json_to_recordset(CAST(%(started)s AS JSON))
                AS (job_id TEXT, owner TEXT, attempt INTEGER)
            ) WITH ORDINALITY AS s(job_id, owner, attempt, n)
        ) AS e
        ORDER BY e.n
        RETURNING id, job_id, owner, type
    ),
    notified AS (
        SELECT pg_notify('exportd_events', json_build_object(
            'job_id', job_id, 'owner', owner, 'id', id)::text)
        FROM event
    )
    SELECT {done_columns}, (SELECT id FROM event WHERE type = 'completed') AS event_id,
           (SELECT count(*) FROM notified) AS notified
    FROM done
    """
).format(columns=_COLUMNS, done_columns=_qualified("done"))
"""The whole of `complete` in one round trip: the fenced update, the artifact rows and the
`completed` event (under the events-order lock, with its NOTIFY), plus the `started`
events of jobs `TAKE_QUIETLY` claimed earlier in the same transaction."""


HOLD = """
    SELECT id FROM exportd_jobs
    WHERE id = %(id)s AND attempt = %(attempt)s AND lease_owner = %(token)s
      AND status = 'running'
    FOR NO KEY UPDATE
    """


def _run(conn: Connection, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one of the statements above on the transaction's own psycopg connection and
    return plain tuples. The claim and completion statements run for every job, and
    SQLAlchemy's result layer (column metadata for each result) was about a third of a
    worker's CPU per job."""
    with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(statement, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


class PostgresJobStore(SqlJobStore):
    dialect_name = "postgresql"

    @classmethod
    def connect(cls, url: str) -> PostgresJobStore:
        # No pre-ping: it costs a round trip per transaction; a dropped connection fails
        # one statement, is discarded by the pool, and the caller's retry gets a new one.
        engine = sa.create_engine(url, pool_size=24, max_overflow=24, pool_recycle=1800)
        return cls(engine)

    def _claim_in(
        self, conn: Connection, request: ClaimRequest, limit: int, *, events: bool = True
    ) -> list[Claim]:
        token = f"{request.worker_id}/{new_id()[-12:]}"
        now = utcnow()
        owner_cap, lease_seconds = request.owner_cap, request.lease_seconds
        skipped: list[str] = []
        claims: list[Claim] = []
        for _ in range(8):
            wanted = limit - len(claims)
            if wanted < 1:
                break
            found = _run(
                conn, PICK, {"now": now, "cap": owner_cap, "skipped": skipped, "limit": wanted}
            )
            if not found:
                break
            # (id, owner, priority, run_after, _): claim order is priority, run_after, id
            picked = sorted(found, key=lambda row: (-row[2], row[3], row[0]))
            params = {
                "ids": [row[0] for row in picked],
                "owners": [row[1] for row in picked],
                "token": token,
                "now": now,
                "lease_until": now + timedelta(seconds=lease_seconds),
                "cap": owner_cap,
                "lock": EVENTS_LOCK,
            }
            taken = {row[0]: row for row in _run(conn, TAKE if events else TAKE_QUIETLY, params)}
            for job_id, owner, *_ in picked:
                if job_id in taken:
                    job = job_from_mapping(dict(zip(JOB_COLUMNS, taken[job_id], strict=False)))
                    claims.append(Claim(job, token))
                    local = {"job_id": job.id, "owner": job.owner, "id": 0}
                    super()._notify(conn, "events", local)
                elif owner not in skipped:
                    skipped.append(owner)  # at its cap after all: look further
            if taken:  # retry only while holding no events lock (owner locks come first)
                break
        return claims

    def _hold(self, conn: Connection, claim: Claim) -> None:
        job_id, attempt, token = claim.fence
        if not _run(conn, HOLD, {"id": job_id, "attempt": attempt, "token": token}):
            raise LeaseLost(f"job {job_id} attempt {attempt} is no longer held by this worker")

    def _complete_in(
        self,
        conn: Connection,
        claim: Claim,
        produced: Sequence[Artifact],
        progress: Progress,
        started: Sequence[Claim] = (),
    ) -> Job:
        job_id, attempt, token = claim.fence
        now = utcnow()
        params = {
            "id": job_id,
            "attempt": attempt,
            "token": token,
            "now": now,
            "done": progress.done,
            "total": progress.total,
            "unit": progress.unit,
            "message": progress.message,
            "artifacts": orjson.dumps([asdict(a) for a in produced]).decode(),
            "lock": EVENTS_LOCK,
            "data": orjson.dumps(completed_data(attempt, progress, produced), default=str).decode(),
            "started": orjson.dumps(
                [
                    {"job_id": c.job.id, "owner": c.job.owner, "attempt": c.job.attempt}
                    for c in started
                ]
            ).decode(),
        }
        found = _run(conn, COMPLETE, params)
        if not found:
            raise LeaseLost(f"job {job_id} attempt {attempt} is no longer held by this worker")
        row = dict(zip(JOB_COLUMNS, found[0], strict=False))
        event_id = found[0][len(JOB_COLUMNS)]
        super()._notify(conn, "events", {"job_id": job_id, "owner": row["owner"], "id": event_id})
        return job_from_mapping(row, tuple(produced))

    def _expired(self, now: datetime) -> sa.Select[Any]:
        return super()._expired(now).with_for_update(skip_locked=True)

    def _event(self, conn: Connection, job: Any, type_: str, **data: Any) -> None:
        event_id = conn.execute(
            INSERT_EVENT,
            {
                "lock": EVENTS_LOCK,
                "job_id": job.id,
                "owner": job.owner,
                "type": type_,
                "data": orjson.dumps(data, default=str).decode(),
                "created_at": utcnow(),
            },
        ).scalar_one()
        # NOTIFY went out with the insert; tell this process's listeners after commit.
        super()._notify(conn, "events", {"job_id": job.id, "owner": job.owner, "id": event_id})

    def _relax_durability(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    def _notify(self, conn: Connection, channel: str, payload: dict[str, Any]) -> None:
        super()._notify(conn, channel, payload)
        conn.execute(
            sa.select(sa.func.pg_notify(CHANNELS[channel], orjson.dumps(payload).decode()))
        )

    def raw_dsn(self) -> str:
        """A libpq DSN for a dedicated LISTEN connection."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


__all__ = ["CHANNELS", "PostgresJobStore", "Status", "jobs"]
