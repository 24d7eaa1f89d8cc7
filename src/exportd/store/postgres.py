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
writes the events, and on the hot paths (a claim's take, a completion) that statement
goes to the server together with the COMMIT, so no round trip to the worker happens
while the lock is held. A completion is two statements in a transaction of its own: the
fenced update with the artifact rows and the owner's usage (checked against the quota),
then the messages and the event, with the COMMIT.

Advisory locks use exportd's own two-key space: `(LOCK_SPACE + n, key)`, never the
single-bigint space other applications use."""

from __future__ import annotations

import logging
import time
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
from exportd.store.outbox import job_summary, messages_for
from exportd.store.rows import completed_data, job_from_mapping
from exportd.store.schema import jobs
from exportd.store.sql import SqlJobStore

log = logging.getLogger(__name__)

CHANNELS = {"jobs": "exportd_jobs", "events": "exportd_events", "outbox": "exportd_outbox"}

LOCK_SPACE = 0x65787000  # "exp" and a byte for the kind of lock
EVENTS_LOCK = f"{LOCK_SPACE}, 0"
"""The events-order lock (one key)."""
CLAIM_LOCKS = LOCK_SPACE + 1
"""Per owner, `hashtext(owner)`: held by a claim while it counts the owner's running jobs."""
CREATE_LOCKS = LOCK_SPACE + 2
"""Per owner: held while creating jobs counts the owner's active jobs."""

MAX_PICKS = 8

PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled connection unused for longer is pinged before use."""

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

FINISH = """
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
    )
    SELECT {done_columns}, usage.bytes_stored, usage.storage_quota_bytes,
           (SELECT count(*) FROM stored),
           (SELECT coalesce(json_agg(json_build_array(h.id, h.url, h.events)), '[]')
            FROM exportd_webhooks AS h
            WHERE h.owner = done.owner AND h.disabled_at IS NULL)
    FROM done, usage
    """.format(columns=", ".join(JOB_COLUMNS), done_columns=_qualified("done"))
"""The first half of `complete`: the fenced update, the artifact rows and the owner's
usage (its row stays locked until commit, so the quota check on it cannot race), with
the owner's enabled webhooks for the messages. No events-order lock yet."""

RECORD_COMPLETION = f"""
    WITH queued AS (
        INSERT INTO exportd_outbox
        SELECT * FROM json_populate_recordset(NULL::exportd_outbox, CAST(%(messages)s AS JSON))
        RETURNING 1
    ),
    ordered AS (
        SELECT pg_advisory_xact_lock({EVENTS_LOCK}) WHERE (SELECT count(*) FROM queued) >= 0
    ),
    event AS (
        INSERT INTO exportd_job_events (job_id, owner, type, data, created_at)
        SELECT %(id)s, %(owner)s, 'completed', CAST(%(data)s AS JSON), %(now)s FROM ordered
        RETURNING id
    ),
    notified AS (
        SELECT pg_notify('exportd_events', json_build_object(
            'job_id', CAST(%(id)s AS TEXT), 'owner', CAST(%(owner)s AS TEXT), 'id', event.id
        )::text)
        FROM event
    ),
    told AS (
        SELECT pg_notify('exportd_outbox', json_build_object('count', n)::text)
        FROM (SELECT count(*) AS n FROM queued) AS q WHERE n > 0
    )
    SELECT (SELECT id FROM event), (SELECT count(*) FROM queued),
           (SELECT count(*) FROM notified), (SELECT count(*) FROM told)
    """
"""The second half, sent with the COMMIT: the messages, then the `completed` event under
the events-order lock, with its NOTIFY (and the outbox's when there are messages)."""


def _run(
    conn: Connection, statement: str, params: dict[str, Any], *, commit: bool = False
) -> list[tuple[Any, ...]]:
    """Run one of the statements above on the transaction's own psycopg connection and
    return plain tuples. The claim and completion statements run for every job, and
    SQLAlchemy's result layer (column metadata for each result) was about a third of a
    worker's CPU per job. psycopg errors are wrapped as SQLAlchemy's, so the store's
    `_tx` translates them like any other.

    With `commit`, the statement is the transaction's last and goes to the server with
    the COMMIT in one round trip (a psycopg pipeline). The statements that take the
    events-order lock end their transaction this way: the lock, which every event writer
    waits for, is then held for the server's work and the WAL flush only, never while the
    worker process gets round to sending the COMMIT. The transaction is committed when
    this returns; SQLAlchemy's own commit afterwards finds nothing to do."""
    import psycopg

    raw = conn.connection.dbapi_connection
    try:
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            if commit:
                with raw.cursor() as ending, raw.pipeline():  # type: ignore[union-attr]
                    cursor.execute(statement, params)
                    ending.execute("COMMIT")  # one Sync, when the pipeline ends, for both
            else:
                cursor.execute(statement, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, params, exc, psycopg.Error, connection_invalidated=conn.closed
        ) from exc


def _end_failed_transaction(conn: Connection) -> None:
    """Roll back the driver's open transaction after a statement failed, so that the
    store's commit afterwards has nothing to do (a dead connection fails that commit)."""
    try:
        conn.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
    except Exception:  # the connection is gone: the commit reports it
        log.debug("rollback after a failed claim round failed", exc_info=True)


def _ping_after_idle(engine: sa.Engine, idle_seconds: float) -> None:
    """Ping a pooled connection before handing it out if it sat unused for more than
    `idle_seconds`; a dead one is replaced. After a server restart every pooled
    connection is dead: the idle ones are caught here, and a connection that was busy
    meanwhile fails its transaction, which the store reports as transient (and its
    writers retry). Pinging every checkout (`pool_pre_ping`) would cost each
    transaction a round trip: two per job on a busy worker."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: Any, record: Any) -> None:
        record.info["exportd_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("exportd_idle_since")
        if since is None or time.monotonic() - since <= idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi)
        except Exception:
            alive = False
        if not alive:  # the pool discards this connection and checks out another
            raise sa.exc.DisconnectionError("pooled connection is dead")


class PostgresJobStore(SqlJobStore):
    dialect_name = "postgresql"

    @classmethod
    def connect(cls, url: str) -> PostgresJobStore:
        engine = sa.create_engine(
            url, pool_size=24, max_overflow=24, pool_recycle=1800, pool_use_lifo=True
        )
        _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
        return cls(engine)

    def _claim_in(self, conn: Connection, request: ClaimRequest, limit: int) -> list[Claim]:
        """Claim in rounds of pick and take. A take ends its transaction (it writes the
        `started` events under the events-order lock, see `_run`), so a round
        after the first runs in a transaction of its own; if one of those fails, the
        claims the rounds before it committed are returned."""
        skipped: list[str] = []
        claims: list[Claim] = []
        for _ in range(MAX_PICKS):
            wanted = limit - len(claims)
            if wanted < 1:
                break
            try:
                found = self._claim_round(conn, request, wanted, skipped)
            except sa.exc.DBAPIError:
                if not claims:
                    raise
                log.warning("claim round failed; keeping the %d claims taken", len(claims))
                _end_failed_transaction(conn)
                break
            if found is None:
                break
            claims += found
        return claims

    def _claim_round(
        self, conn: Connection, request: ClaimRequest, wanted: int, skipped: list[str]
    ) -> list[Claim] | None:
        """Pick up to `wanted` candidates and take what the cap allows (None: nothing
        left to pick). Owners found busy or at their cap are added to `skipped`."""
        params = {"now": utcnow(), "cap": request.owner_cap, "skipped": skipped, "limit": wanted}
        found = _run(conn, PICK, params)
        if not found:
            return None
        busy = {row[1] for row in found if not row[4]}
        self.stats.add("owner_lock_busy", sum(1 for row in found if not row[4]))
        skipped += sorted(busy - set(skipped))
        # (id, owner, priority, run_after, locked): claim order is priority, run_after, id
        picked = sorted((row for row in found if row[4]), key=lambda row: (-row[2], row[3], row[0]))
        return self._take(conn, request, picked, skipped) if picked else []

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
        taken = {row[0]: row for row in _run(conn, TAKE, params, commit=True)}
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
        }
        found = _run(conn, FINISH, params)
        if not found:
            raise lease_lost(claim)
        row = dict(zip(JOB_COLUMNS, found[0], strict=False))
        stored, own_quota, _, hooks = found[0][len(JOB_COLUMNS) :]
        check_quota(stored, own_quota, quota)  # raising rolls the whole transaction back
        done = job_from_mapping(row, tuple(produced))
        summary = job_summary(claim.job, Status.COMPLETED, produced=produced, progress=progress)
        messages = messages_for(claim.job, Status.COMPLETED, summary, hooks)
        recorded = {
            "messages": orjson.dumps(messages).decode(),
            "id": job_id,
            "owner": done.owner,
            "now": now,
            "data": orjson.dumps(completed_data(attempt, progress, produced), default=str).decode(),
        }
        event_id, queued, _, _ = _run(conn, RECORD_COMPLETION, recorded, commit=True)[0]
        local = super()._notify
        local(conn, "events", {"job_id": job_id, "owner": done.owner, "id": event_id})
        if queued:
            local(conn, "outbox", {"count": queued})
        return done

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
