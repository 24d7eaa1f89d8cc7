"""`PostgresJobStore`: the distributed engine.

A claim (of one job or a batch) is two statements: the first picks the next jobs with
`FOR UPDATE SKIP LOCKED` and *tries* their owners' advisory locks
(`pg_try_advisory_xact_lock`, which never waits: an owner another claimer is busy with
is skipped, as SKIP LOCKED skips a locked row); the second re-counts the locked owners'
running jobs (a fresh snapshot, newer than the locks, so concurrent claimers cannot
overshoot the cap), marks running the jobs the cap allows and writes their `started`
events. Owners found at their cap are excluded and the pick repeated; since no lock is
waited for, repeating cannot deadlock.

Every event insert takes a transaction-scoped lock first so event ids become visible in
id order, and sends `NOTIFY` in the same statement. A transaction holding that lock
never waits for a row or for another lock: it is taken last, by the statement that
writes the events. A completion is one statement (fenced update, artifact rows, event),
in a transaction of its own.

Advisory locks use exportd's own two-key space: `(LOCK_SPACE + n, key)`, never the
single-bigint space other applications use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.jobs import Artifact, Claim, Job, Progress, Status, new_claim_id, utcnow
from exportd.store.attempts import check_quota
from exportd.store.base import ClaimRequest, lease_lost
from exportd.store.outbox import job_summary
from exportd.store.rows import completed_data, job_from_mapping
from exportd.store.schema import jobs
from exportd.store.sql import SqlJobStore

CHANNELS = {"jobs": "exportd_jobs", "events": "exportd_events", "outbox": "exportd_outbox"}

LOCK_SPACE = 0x65787000  # "exp" and a byte for the kind of lock
EVENTS_LOCK = f"{LOCK_SPACE}, 0"
"""The events-order lock (one key)."""
CLAIM_LOCKS = LOCK_SPACE + 1
"""Per owner, `hashtext(owner)`: held by a claim while it counts the owner's running jobs."""
CREATE_LOCKS = LOCK_SPACE + 2
"""Per owner: held while creating jobs counts the owner's active jobs."""

MAX_PICKS = 8

INSERT_EVENT = sa.text(
    f"""
    WITH ordered AS (SELECT pg_advisory_xact_lock({EVENTS_LOCK})),
    inserted AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at, actor)
        SELECT :job_id, :owner, :type, CAST(:data AS JSON), :created_at, :actor FROM ordered
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


def _qualified(table: str) -> str:
    return ", ".join(f"{table}.{name}" for name in JOB_COLUMNS)


PICK = f"""
    SELECT id, owner, priority, run_after,
           pg_try_advisory_xact_lock({CLAIM_LOCKS}, hashtext(owner)) AS locked
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
    """
"""Up to `limit` candidates in claim order, their rows locked; `locked` says whether this
transaction holds the candidate's owner lock (a try: it never waits)."""

TAKE = """
    WITH candidate AS (
        SELECT c.id, c.owner, c.claim_id,
               row_number() OVER (PARTITION BY c.owner ORDER BY c.ord) AS rank
        FROM unnest(
            CAST(%(ids)s AS TEXT[]), CAST(%(owners)s AS TEXT[]), CAST(%(claims)s AS TEXT[])
        ) WITH ORDINALITY AS c(id, owner, claim_id, ord)
    ),
    running AS (
        SELECT owner, count(*) AS n FROM exportd_jobs
        WHERE status = 'running' AND owner = ANY(CAST(%(owners)s AS TEXT[]))
        GROUP BY owner
    ),
    allowed AS (
        SELECT candidate.id, candidate.claim_id FROM candidate LEFT JOIN running USING (owner)
        WHERE coalesce(running.n, 0) + candidate.rank <= %(cap)s
    ),
    taken AS (
        UPDATE exportd_jobs SET
            status = 'running', attempt = attempt + 1, lease_owner = %(worker)s,
            claim_id = allowed.claim_id, lease_expires_at = %(lease_until)s,
            started_at = %(now)s, finished_at = NULL, updated_at = %(now)s
        FROM allowed
        WHERE exportd_jobs.id = allowed.id AND exportd_jobs.status = 'queued'
        RETURNING {job_columns}
    ),
    ordered AS (SELECT pg_advisory_xact_lock({events}) WHERE EXISTS (SELECT FROM taken)),
    event AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
        SELECT taken.id, taken.owner, 'started',
               json_build_object(
                   'status', 'running', 'attempt', taken.attempt, 'worker', %(worker)s
               ), %(now)s
        FROM taken, ordered
        RETURNING id, job_id, owner
    ),
    notified AS (
        SELECT pg_notify('exportd_events', json_build_object(
            'job_id', job_id, 'owner', owner, 'id', id)::text) FROM event
    )
    SELECT {taken_columns}, (SELECT count(*) FROM notified) AS notified FROM taken
    """.format(
    job_columns=_qualified("exportd_jobs"), taken_columns=_qualified("taken"), events=EVENTS_LOCK
)
"""Takes the candidates the owner cap allows, counted afresh under the owner locks
(this statement's snapshot is newer than the locks), and writes their `started` events
(the events-order lock is taken last, once the rows are updated)."""

COMPLETE = """
    WITH done AS (
        UPDATE exportd_jobs SET
            status = 'completed', finished_at = %(now)s, updated_at = %(now)s,
            expires_at = %(expires_at)s, lease_owner = NULL, lease_expires_at = NULL,
            progress_done = %(done)s, progress_total = %(total)s, progress_unit = %(unit)s,
            progress_message = %(message)s,
            error_code = NULL, error_message = NULL, error_retryable = NULL
        WHERE id = %(id)s AND attempt = %(attempt)s AND claim_id = %(token)s
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
        RETURNING 1
    ),
    usage AS (
        INSERT INTO exportd_owners AS o
            (owner, bytes_stored, artifacts, downloads, updated_at)
        SELECT done.owner, %(bytes)s, %(count)s, 0, %(now)s FROM done
        ON CONFLICT (owner) DO UPDATE SET
            bytes_stored = o.bytes_stored + EXCLUDED.bytes_stored,
            artifacts = o.artifacts + EXCLUDED.artifacts,
            updated_at = EXCLUDED.updated_at
        RETURNING o.bytes_stored, o.storage_quota_bytes
    ),
    ordered AS (
        SELECT pg_advisory_xact_lock({events})
        FROM done, usage WHERE (SELECT count(*) FROM stored) >= 0
    ),
    event AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
        SELECT done.id, done.owner, 'completed', CAST(%(data)s AS JSON), %(now)s
        FROM ordered, done
        RETURNING id
    ),
    notified AS (
        SELECT pg_notify('exportd_events', json_build_object(
            'job_id', done.id, 'owner', done.owner, 'id', event.id)::text)
        FROM event, done
    )
    SELECT {done_columns}, (SELECT id FROM event) AS event_id,
           (SELECT count(*) FROM notified) AS notified,
           (SELECT bytes_stored FROM usage), (SELECT storage_quota_bytes FROM usage)
    FROM done
    """.format(columns=", ".join(JOB_COLUMNS), done_columns=_qualified("done"), events=EVENTS_LOCK)
"""The whole of `complete` in one round trip: the fenced update, the artifact rows, the
owner's usage and the `completed` event (under the events-order lock, with its NOTIFY).
The events-order lock waits for the usage row and the artifact rows (`ordered` reads
them), so it is taken last: a data-modifying CTE nothing reads would run after it."""


def _run(conn: Connection, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one of the statements above on the transaction's own psycopg connection and
    return plain tuples. The claim and completion statements run for every job, and
    SQLAlchemy's result layer (column metadata for each result) was about a third of a
    worker's CPU per job. psycopg errors are wrapped as SQLAlchemy's, so the store's
    `_tx` translates them like any other."""
    import psycopg

    try:
        with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(statement, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, params, exc, psycopg.Error, connection_invalidated=conn.closed
        ) from exc


class PostgresJobStore(SqlJobStore):
    dialect_name = "postgresql"

    @classmethod
    def connect(cls, url: str) -> PostgresJobStore:
        # Pre-ping costs a round trip per checkout, but after a server restart every
        # pooled connection is dead: without it each would fail one transaction.
        engine = sa.create_engine(
            url, pool_size=24, max_overflow=24, pool_recycle=1800, pool_pre_ping=True
        )
        return cls(engine)

    def _claim_in(self, conn: Connection, request: ClaimRequest, limit: int) -> list[Claim]:
        skipped: list[str] = []
        claims: list[Claim] = []
        for _ in range(MAX_PICKS):
            wanted = limit - len(claims)
            if wanted < 1:
                break
            params = {
                "now": utcnow(),
                "cap": request.owner_cap,
                "skipped": skipped,
                "limit": wanted,
            }
            found = _run(conn, PICK, params)
            if not found:
                break
            busy = {row[1] for row in found if not row[4]}
            self.stats.add("owner_lock_busy", sum(1 for row in found if not row[4]))
            skipped += sorted(busy - set(skipped))
            # (id, owner, priority, run_after, locked): claim order is priority, run_after, id
            picked = sorted(
                (row for row in found if row[4]), key=lambda row: (-row[2], row[3], row[0])
            )
            if picked:
                claims += self._take(conn, request, picked, skipped)
        return claims

    def _take(
        self,
        conn: Connection,
        request: ClaimRequest,
        picked: list[tuple[Any, ...]],
        skipped: list[str],
    ) -> list[Claim]:
        """Take what the cap allows of `picked`; owners that turn out to be at their cap
        are added to `skipped`."""
        now = utcnow()  # after the pick: the lease starts when the claim does
        ids = [row[0] for row in picked]
        tokens = [new_claim_id() for _ in picked]
        params = {
            "ids": ids,
            "owners": [row[1] for row in picked],
            "claims": tokens,
            "worker": request.worker_id,
            "now": now,
            "lease_until": now + timedelta(seconds=request.lease_seconds),
            "cap": request.owner_cap,
        }
        taken = {row[0]: row for row in _run(conn, TAKE, params)}
        claims = []
        for job_id, owner, *_ in picked:
            if job_id in taken:
                job = job_from_mapping(dict(zip(JOB_COLUMNS, taken[job_id], strict=False)))
                assert job.claim_id is not None
                claims.append(Claim(job, job.claim_id))
                local = {"job_id": job.id, "owner": job.owner, "id": 0}
                super()._notify(conn, "events", local)
            elif owner not in skipped:
                skipped.append(owner)  # at its cap after all: look further
        if len(taken) < len(picked):
            self.stats.add("capped")
        return claims

    def _lock_owner_for_create(self, conn: Connection, owner: str) -> None:
        conn.execute(
            sa.text(f"SELECT pg_advisory_xact_lock({CREATE_LOCKS}, hashtext(:owner))"),
            {"owner": owner},
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
        job_id, attempt, token = claim.fence
        now = utcnow()
        params = {
            "expires_at": expires_at,
            "bytes": sum(a.size for a in produced),
            "count": len(produced),
            "id": job_id,
            "attempt": attempt,
            "token": token,
            "now": now,
            "done": progress.done,
            "total": progress.total,
            "unit": progress.unit,
            "message": progress.message,
            "artifacts": orjson.dumps([asdict(a) for a in produced]).decode(),
            "data": orjson.dumps(completed_data(attempt, progress, produced), default=str).decode(),
        }
        # The messages first (a read of the owner's webhooks and an insert, no row locks):
        # the completion below takes the events-order lock and must be the last statement.
        # If it finds the lease lost, the whole transaction, messages included, rolls back.
        self._queue_messages(
            conn,
            claim.job,
            Status.COMPLETED,
            job_summary(claim.job, Status.COMPLETED, produced=produced, progress=progress),
        )
        found = _run(conn, COMPLETE, params)
        if not found:
            raise lease_lost(claim)
        row = dict(zip(JOB_COLUMNS, found[0], strict=False))
        event_id, _, stored, own_quota = found[0][len(JOB_COLUMNS) :]
        check_quota(stored, own_quota, quota)
        super()._notify(conn, "events", {"job_id": job_id, "owner": row["owner"], "id": event_id})
        return job_from_mapping(row, tuple(produced))

    def _expired(self, now: datetime) -> sa.Select[Any]:
        return super()._expired(now).with_for_update(skip_locked=True)

    def _event(
        self, conn: Connection, job: Any, type_: str, *, actor: str | None = None, **data: Any
    ) -> None:
        event_id = conn.execute(
            INSERT_EVENT,
            {
                "job_id": job.id,
                "owner": job.owner,
                "type": type_,
                "data": orjson.dumps(data, default=str).decode(),
                "created_at": utcnow(),
                "actor": actor,
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
