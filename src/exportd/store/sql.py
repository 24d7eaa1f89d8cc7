"""`SqlJobStore`: the one place that owns the job store's SQL.

The store is assembled from parts, one concern each: `StoreBase` (transactions, error
translation, retries, events), `AttemptStore` (what workers write), `OwnerActions`
(cancel, retry, delete, the active-job limit), `UpkeepStore` (shared secrets, sweep
leases), `LifecycleStore` (usage, quotas, expiry, pruning), `TokenStoreMixin` (API
tokens, batches), `WebhookStore` (endpoints; with `DeliveryStore`, sending the outbox),
`SessionStore` (web sessions); this module adds creating and reading jobs. Dialect
subclasses provide the atomic claim,
transaction start and change notification."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.errors import StoreError, TransientStoreError
from exportd.jobs import Artifact, Event, Job, NewJob, Status, utcnow
from exportd.store.actions import OwnerActions
from exportd.store.attempts import AttemptStore, Rescued
from exportd.store.base import ClaimRequest
from exportd.store.lifecycle import LifecycleStore, Usage
from exportd.store.rows import artifact_from_row, event_from_row, job_from_row
from exportd.store.schema import artifacts, audit, job_events, job_labels, jobs
from exportd.store.sessions import SessionStore
from exportd.store.stats import StatsStore
from exportd.store.tokens import Batch, TokenStoreMixin
from exportd.store.upkeep import UpkeepStore
from exportd.store.webhooks import WebhookStore


@dataclass(frozen=True)
class AuditEntry:
    id: int
    owner: str
    actor: str | None
    action: str
    job_id: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


class SqlJobStore(
    SessionStore,
    StatsStore,
    WebhookStore,
    TokenStoreMixin,
    LifecycleStore,
    UpkeepStore,
    OwnerActions,
    AttemptStore,
):
    # -- creating ----------------------------------------------------------------------

    def enqueue(self, new: NewJob, *, active_limit: int | None = None) -> Job:
        """Store a new queued job; with `active_limit`, only if its owner then has at most
        that many queued and running jobs (else `ActiveLimitReached`, nothing stored)."""
        now = utcnow()
        with self._tx(write=True) as conn:
            self._check_active(conn, new.owner, 1, active_limit)
            job = self._insert(conn, new, now, None, None)
            self._notify(conn, "jobs", {"id": job.id})
            self._event(conn, job, "created", status=Status.QUEUED, actor=job.created_by)
        return job

    def enqueue_idempotent(
        self,
        new: NewJob,
        *,
        key: str,
        request_hash: str,
        window: timedelta,
        active_limit: int | None = None,
    ) -> tuple[Job, bool, str | None]:
        """Enqueue unless this owner used `key` within `window`: returns (job, created,
        the stored request hash). A replay is never refused by the active-job limit. A
        concurrent request with the same key loses the race on the unique index and
        finds the winner's job."""
        for _ in range(3):
            now = utcnow()
            try:
                with self._tx(write=True) as conn:
                    found = self._idempotent_in(conn, new.owner, key, now - window)
                    if found is not None:
                        return found[0], False, found[1]
                    self._check_active(conn, new.owner, 1, active_limit)
                    conn.execute(
                        jobs.update()
                        .where(jobs.c.owner == new.owner, jobs.c.idempotency_key == key)
                        .values(idempotency_key=None)
                    )  # an expired use of the key: free it for this request
                    job = self._insert(conn, new, now, key, request_hash)
                    self._notify(conn, "jobs", {"id": job.id})
                    self._event(conn, job, "created", status=Status.QUEUED, actor=job.created_by)
                    return job, True, request_hash
            except TransientStoreError:
                raise
            except StoreError:  # the unique index: another request took the key first
                continue
        raise StoreError("could not store the idempotent request")

    def enqueue_many(
        self,
        news: Sequence[NewJob],
        *,
        batch_owner: str | None = None,
        active_limit: int | None = None,
    ) -> tuple[Batch | None, list[Job]]:
        """All or nothing: every job is stored, or none is. With `batch_owner`, the jobs
        are grouped in a new batch; with `active_limit`, each owner's active jobs,
        these included, stay within it."""
        now = utcnow()
        with self._tx(write=True) as conn:
            adding: dict[str, int] = {}
            for new in news:
                adding[new.owner] = adding.get(new.owner, 0) + 1
            for owner in sorted(adding):  # one order: creations never wait on each other
                self._check_active(conn, owner, adding[owner], active_limit)
            created = []
            batch = self.add_batch(conn, batch_owner, len(news)) if batch_owner else None
            for new in news:
                if batch is not None:
                    new = replace(new, batch_id=batch.id)
                created.append(self._insert(conn, new, now, None, None))
            self._notify(conn, "jobs", {"id": "*"})
            for job in created:
                self._event(conn, job, "created", status=Status.QUEUED, actor=job.created_by)
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
                labels=new.labels,
                notify=new.notify,
                manual_retries=0,
                created_by=new.created_by,
                created_at=now,
                updated_at=now,
            )
            .returning(*jobs.c)
        ).one()
        if new.labels:
            conn.execute(
                job_labels.insert(),
                [
                    {"job_id": new.id, "owner": new.owner, "key": key, "value": value}
                    for key, value in new.labels.items()
                ],
            )
        return job_from_row(row)

    # -- reading -------------------------------------------------------------------------

    def find_idempotent(
        self, owner: str, key: str, *, window: timedelta
    ) -> tuple[Job, str | None] | None:
        """The job this owner created with `key` within `window`, and its request hash."""
        with self._tx() as conn:
            return self._idempotent_in(conn, owner, key, utcnow() - window)

    def _idempotent_in(
        self, conn: Connection, owner: str, key: str, since: datetime
    ) -> tuple[Job, str | None] | None:
        row = conn.execute(
            sa.select(jobs.c.id, jobs.c.request_hash).where(
                jobs.c.owner == owner,
                jobs.c.idempotency_key == key,
                jobs.c.created_at > since,
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
        labels: Sequence[tuple[str, str]] = (),
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first. Ids are time-ordered, so the cursor is simply the last id seen.
        `labels` are (key, value) pairs a job must all carry."""
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
        for key, value in labels:
            query = query.where(
                sa.exists().where(
                    job_labels.c.job_id == jobs.c.id,
                    job_labels.c.key == key,
                    job_labels.c.value == value,
                    *([job_labels.c.owner == owner] if owner is not None else []),
                )
            )
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

    def history(
        self, job_id: str, owner: str | None = None, *, after: int = 0, limit: int = 100
    ) -> list[Event]:
        """The job's events in order, after the event id `after` (`JobNotFound` for
        another owner's job)."""
        self.get(job_id, owner)
        return self.events_after(after, job_id=job_id, limit=limit)

    def audit_list(
        self, owner: str | None, *, before: int | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        """Tombstones of deleted jobs, newest first (`owner=None`: every owner's)."""
        query = audit.select().order_by(audit.c.id.desc()).limit(limit)
        if owner is not None:
            query = query.where(audit.c.owner == owner)
        if before is not None:
            query = query.where(audit.c.id < before)
        with self._tx() as conn:
            return [
                AuditEntry(r.id, r.owner, r.actor, r.action, r.job_id, r.data, r.created_at)
                for r in conn.execute(query)
            ]

    def last_event_id(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.max(job_events.c.id))).scalar() or 0)


__all__ = ["AuditEntry", "ClaimRequest", "Page", "Rescued", "SqlJobStore", "Usage"]
