"""`OwnerActions`: what an owner (or an admin) does to a job — cancel, retry, delete —
and the active-job limit those checks share with creation.

Each action is one conditional statement on the job's row, so an action racing a worker
(a claim, a completion) takes effect exactly once or not at all, and writes its event
only when it changed the job."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.errors import ActiveLimitReached, InvalidTransition, RetryLimitReached
from exportd.jobs import Job, Status, utcnow
from exportd.store.outbox import OutboxStore, job_summary
from exportd.store.schema import ACTIVE_JOBS, artifacts, audit, job_events, job_labels, jobs

ACTIVE = (Status.QUEUED, Status.RUNNING)
"""The statuses `ACTIVE_JOBS` names: what the active-job limit counts."""


def tombstone(job: Job) -> dict[str, object]:
    """What the audit list keeps of a deleted job."""
    return {
        "exporter": job.exporter,
        "format": job.format,
        "status": str(job.status),
        "filename": job.filename,
        "labels": job.labels,
        "created_at": job.created_at.isoformat(),
        "files": [a.name for a in job.artifacts],
    }


class OwnerActions(OutboxStore):
    def count_active(self, owner: str) -> int:
        with self._tx() as conn:
            return self._count_active(conn, owner)

    def _count_active(self, conn: Connection, owner: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.owner == owner, sa.text(ACTIVE_JOBS))
        )
        return int(conn.execute(query).scalar_one())

    def _check_active(self, conn: Connection, owner: str, adding: int, limit: int | None) -> None:
        """Raise `ActiveLimitReached` unless the owner can have `adding` more active
        jobs. Counted under the owner's creation lock, so concurrent creations cannot
        all see room for themselves."""
        if limit is None:
            return
        self._lock_owner_for_create(conn, owner)
        active = self._count_active(conn, owner)
        if active + adding > limit:
            raise ActiveLimitReached(active, limit)

    def request_cancel(
        self, job_id: str, owner: str | None = None, *, actor: str | None = None
    ) -> Job:
        """A queued job is cancelled at once; a running one is flagged and stopped by its
        runner at the next checkpoint; a finished job is left as it is. A cancel racing a
        claim lands on whichever state the job is in once the claim has committed."""
        now = utcnow()
        queued = jobs.c.status == Status.QUEUED
        with self._tx(write=True) as conn:
            self._load(conn, job_id, owner)  # not found (or another owner's): 404
            changed = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id,
                    sa.or_(
                        queued,
                        sa.and_(
                            jobs.c.status == Status.RUNNING, jobs.c.cancel_requested == sa.false()
                        ),
                    ),
                )
                .values(
                    status=sa.case((queued, Status.CANCELLED.value), else_=jobs.c.status),
                    finished_at=sa.case((queued, now), else_=jobs.c.finished_at),
                    cancel_requested=True,
                    updated_at=now,
                )
                .returning(*jobs.c)
            ).first()
            if changed is not None:
                if changed.status == Status.CANCELLED:
                    summary = job_summary(changed, Status.CANCELLED)
                    self._queue_messages(conn, changed, Status.CANCELLED, summary)
                    self._event(conn, changed, "cancelled", status=Status.CANCELLED, actor=actor)
                else:
                    self._event(
                        conn, changed, "cancel_requested", status=Status.RUNNING, actor=actor
                    )
            return self._load(conn, job_id)

    def retry(
        self,
        job_id: str,
        owner: str | None = None,
        *,
        active_limit: int | None = None,
        max_retries: int | None = None,
        actor: str | None = None,
    ) -> Job:
        """Queue a failed or cancelled job again as a new attempt series; with
        `active_limit`, only if its owner has room for one more active job; with
        `max_retries`, at most that many times (`RetryLimitReached`)."""
        now = utcnow()
        with self._tx(write=True) as conn:
            job = self._load(conn, job_id, owner)
            if job.status not in (Status.FAILED, Status.CANCELLED):
                raise InvalidTransition(f"a {job.status} job cannot be retried")
            if max_retries is not None and job.manual_retries >= max_retries:
                raise RetryLimitReached(
                    f"the job was retried {job.manual_retries} times; the limit is {max_retries}"
                )
            self._check_active(conn, job.owner, 1, active_limit)
            changed = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status.in_([Status.FAILED.value, Status.CANCELLED.value]),
                )
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
                    expires_at=None,
                    manual_retries=jobs.c.manual_retries + 1,
                    updated_at=now,
                )
            ).rowcount
            if changed != 1:
                raise InvalidTransition("the job changed meanwhile; it was not retried")
            self._drop_artifacts(conn, [job_id])
            self._event(conn, job, "retried", status=Status.QUEUED, actor=actor)
            self._notify(conn, "jobs", {"id": job_id})
            return self._load(conn, job_id)

    def delete(self, job_id: str, owner: str | None = None, *, actor: str | None = None) -> Job:
        """Remove a job that is not running, with its events, labels and artifact rows,
        leaving a tombstone in the owner's audit list; returns it so the caller can delete
        its files."""
        with self._tx(write=True) as conn:
            job = self._load(conn, job_id, owner)
            if job.status == Status.RUNNING:
                raise InvalidTransition("a running job must be cancelled before it is deleted")
            self._drop_artifacts(conn, [job_id])
            conn.execute(job_events.delete().where(job_events.c.job_id == job_id))
            conn.execute(job_labels.delete().where(job_labels.c.job_id == job_id))
            conn.execute(
                audit.insert().values(
                    owner=job.owner,
                    actor=actor,
                    action="deleted",
                    job_id=job_id,
                    data=tombstone(job),
                    created_at=utcnow(),
                )
            )
            removed = conn.execute(
                jobs.delete().where(jobs.c.id == job_id, jobs.c.status != Status.RUNNING)
            ).rowcount
            if removed != 1:  # claimed meanwhile: everything above rolls back
                raise InvalidTransition("a running job must be cancelled before it is deleted")
            self._notify(conn, "events", {"job_id": job_id, "owner": job.owner, "id": 0})
            return job

    def count_download(self, job_id: str, name: str) -> None:
        with self._tx(write=True) as conn:
            counted = conn.execute(
                artifacts.update()
                .where(artifacts.c.job_id == job_id, artifacts.c.name == name)
                .values(downloads=artifacts.c.downloads + 1)
                .returning(artifacts.c.job_id)
            ).first()
            owner = conn.execute(sa.select(jobs.c.owner).where(jobs.c.id == job_id)).scalar()
            if counted is not None and owner is not None:
                self._add_usage(conn, owner, 0, 0, downloads=1)
