"""`LifecycleStore`: what happens to exports after they finish — owners' storage usage
and quotas, expiry of files, pruning of old jobs, thinning of their progress events.

Each sweep step is one bounded transaction (at most `BATCH` jobs) that takes its row
locks first and writes its events last, so it never holds the events-order lock while it
waits for a row. Files are removed by the caller, after the commit: a crash in between
leaves files no row refers to, which the orphan sweep removes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.jobs import TERMINAL, Artifact, Status, utcnow
from exportd.store.base import StoreBase
from exportd.store.rows import artifact_from_row
from exportd.store.schema import (
    UtcDateTime,
    artifacts,
    job_events,
    job_labels,
    jobs,
    outbox,
    owners,
    sweeps,
)

BATCH = 500


@dataclass(frozen=True)
class Usage:
    """What an owner keeps: stored bytes and files, downloads counted, jobs by status, and
    the quota that applies (the owner's own, else the server's default)."""

    owner: str
    bytes_stored: int
    artifacts: int
    downloads: int
    quota_bytes: int | None
    quota_is_default: bool
    jobs: dict[str, int]


class LifecycleStore(StoreBase):
    # -- usage and quotas ----------------------------------------------------------------

    def usage(self, owner: str, *, default_quota: int | None) -> Usage:
        with self._tx() as conn:
            row = conn.execute(owners.select().where(owners.c.owner == owner)).first()
            counts = conn.execute(
                sa.select(jobs.c.status, sa.func.count())
                .where(jobs.c.owner == owner)
                .group_by(jobs.c.status)
            ).all()
        own = row.storage_quota_bytes if row is not None else None
        return Usage(
            owner=owner,
            bytes_stored=int(row.bytes_stored) if row is not None else 0,
            artifacts=int(row.artifacts) if row is not None else 0,
            downloads=int(row.downloads) if row is not None else 0,
            quota_bytes=own if own is not None else default_quota,
            quota_is_default=own is None,
            jobs={status: int(n) for status, n in counts},
        )

    def stored_bytes(self, owner: str) -> tuple[int, int | None]:
        """The bytes an owner keeps stored, and its own quota (None: the default)."""
        query = sa.select(owners.c.bytes_stored, owners.c.storage_quota_bytes).where(
            owners.c.owner == owner
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return (0, None) if row is None else (int(row.bytes_stored), row.storage_quota_bytes)

    def set_quota(self, owner: str, quota_bytes: int | None) -> None:
        """Give `owner` a quota of its own (None: the server's default applies again)."""
        with self._tx(write=True) as conn:
            self._add_usage(conn, owner, 0, 0)
            conn.execute(
                owners.update()
                .where(owners.c.owner == owner)
                .values(storage_quota_bytes=quota_bytes, updated_at=utcnow())
            )

    # -- expiry, pruning, thinning ---------------------------------------------------------

    def expire_due(self, now: datetime | None = None) -> list[Artifact]:
        """Drop the artifact rows of up to `BATCH` completed exports whose files expired,
        writing an `expired` event for each; returns the artifacts whose files to remove.
        Jobs are taken in expiry order from where the last call stopped."""
        now = now or utcnow()
        with self._tx(write=True) as conn:
            due = conn.execute(
                sa.select(jobs.c.id, jobs.c.owner, jobs.c.expires_at)
                .where(jobs.c.expires_at.is_not(None), jobs.c.expires_at <= now)
                .where(self._after_cursor(conn, "expiry", jobs.c.expires_at))
                .order_by(jobs.c.expires_at, jobs.c.id)
                .limit(BATCH)
            ).all()
            if not due:
                return []
            dropped = self._drop_artifacts(conn, [row.id for row in due])
            files: dict[str, int] = {}
            for art in dropped:
                files[art.job_id] = files.get(art.job_id, 0) + 1
            self._set_cursor(conn, "expiry", due[-1].expires_at, due[-1].id)
            for row in due:
                if row.id in files:
                    self._event(conn, row, "expired", status=Status.COMPLETED, files=files[row.id])
        return dropped

    def prune_finished(self, before: datetime) -> tuple[int, list[Artifact]]:
        """Delete up to `BATCH` jobs that finished before `before`, with their events and
        artifact rows; returns how many jobs, and the artifacts whose files to remove."""
        terminal = [str(s) for s in TERMINAL]
        with self._tx(write=True) as conn:
            old = conn.execute(
                sa.select(jobs.c.id)
                .where(jobs.c.finished_at.is_not(None), jobs.c.finished_at < before)
                .where(jobs.c.status.in_(terminal))
                .order_by(jobs.c.finished_at)
                .limit(BATCH)
            ).all()
            ids = [row.id for row in old]
            if not ids:
                return 0, []
            dropped = self._drop_artifacts(conn, ids)
            conn.execute(job_events.delete().where(job_events.c.job_id.in_(ids)))
            conn.execute(job_labels.delete().where(job_labels.c.job_id.in_(ids)))
            conn.execute(
                outbox.delete().where(outbox.c.job_id.in_(ids), outbox.c.status != "pending")
            )
            gone = conn.execute(
                jobs.delete().where(jobs.c.id.in_(ids), jobs.c.status.in_(terminal))
            ).rowcount
        return int(gone), dropped

    def thin_progress(self, before: datetime) -> int:
        """Delete the `progress` events of up to `BATCH` jobs that finished before
        `before` (their transitions stay), continuing where the last call stopped;
        returns how many events went."""
        with self._tx(write=True) as conn:
            done = conn.execute(
                sa.select(jobs.c.id, jobs.c.finished_at)
                .where(jobs.c.finished_at.is_not(None), jobs.c.finished_at < before)
                .where(self._after_cursor(conn, "thinning", jobs.c.finished_at))
                .order_by(jobs.c.finished_at, jobs.c.id)
                .limit(BATCH)
            ).all()
            if not done:
                return 0
            removed = conn.execute(
                job_events.delete().where(
                    job_events.c.job_id.in_([row.id for row in done]),
                    job_events.c.type == "progress",
                )
            ).rowcount
            self._set_cursor(conn, "thinning", done[-1].finished_at, done[-1].id)
        return int(removed)

    # -- rows whose files are missing ------------------------------------------------------

    def artifacts_after(self, job_id: str, limit: int = BATCH) -> list[Artifact]:
        """Artifact rows in job order after `job_id` (`""` for the first)."""
        query = (
            artifacts.select()
            .where(artifacts.c.job_id > job_id)
            .order_by(artifacts.c.job_id, artifacts.c.name)
            .limit(limit)
        )
        with self._tx() as conn:
            return [artifact_from_row(row) for row in conn.execute(query)]

    def forget_artifacts(self, missing: list[Artifact]) -> int:
        """Drop rows whose files are gone (a `files_missing` event per job): the export is
        then expired rather than broken."""
        job_ids = sorted({art.job_id for art in missing})
        if not job_ids:
            return 0
        names = {(art.job_id, art.name) for art in missing}
        with self._tx(write=True) as conn:
            present = conn.execute(
                sa.select(jobs.c.id, jobs.c.owner).where(jobs.c.id.in_(job_ids))
            ).all()
            owner_of = {row.id: row.owner for row in present}
            removed: list[Any] = []
            for job_id, name in sorted(names):
                removed += conn.execute(
                    artifacts.delete()
                    .where(artifacts.c.job_id == job_id, artifacts.c.name == name)
                    .returning(artifacts.c.job_id, artifacts.c.size)
                ).all()
            per_owner: dict[str, tuple[int, int]] = {}
            for row in removed:
                owner = owner_of.get(row.job_id)
                if owner is not None:
                    size, count = per_owner.get(owner, (0, 0))
                    per_owner[owner] = (size + row.size, count + 1)
            for owner in sorted(per_owner):
                self._add_usage(conn, owner, -per_owner[owner][0], -per_owner[owner][1])
            for row in present:
                gone = sum(1 for r in removed if r.job_id == row.id)
                if gone:
                    self._event(conn, row, "files_missing", status=Status.COMPLETED, files=gone)
        return len(removed)

    # -- cursors ----------------------------------------------------------------------------

    def _after_cursor(
        self, conn: Connection, name: str, column: sa.Column[Any]
    ) -> sa.ColumnElement[bool]:
        """Rows after the sweep's cursor, in (`column`, id) order."""
        value = conn.execute(sa.select(sweeps.c.cursor).where(sweeps.c.name == name)).scalar()
        if not value:
            return sa.true()
        moment, _, job_id = str(value).partition("|")
        at = sa.literal(datetime.fromisoformat(moment), UtcDateTime())
        return sa.or_(column > at, sa.and_(column == at, jobs.c.id > job_id))

    def _set_cursor(self, conn: Connection, name: str, moment: datetime, job_id: str) -> None:
        conn.execute(self._insert_ignoring_conflicts(sweeps).values(name=name))
        conn.execute(
            sweeps.update()
            .where(sweeps.c.name == name)
            .values(cursor=f"{moment.isoformat()}|{job_id}")
        )
