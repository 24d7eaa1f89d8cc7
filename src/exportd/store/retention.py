"""Expiry of finished exports' files: a completed job with `ttl_seconds` keeps its
artifacts until `finished_at + ttl_seconds`; then the files and their rows are removed,
an `expired` event is recorded, and downloads answer 410. The job itself stays, so its
history can still be read."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from exportd.jobs import Artifact, Status, utcnow
from exportd.storage import ArtifactStorage
from exportd.store.rows import artifact_from_row
from exportd.store.schema import artifacts, jobs
from exportd.store.sql import SqlJobStore


def expire(store: SqlJobStore, storage: ArtifactStorage, now: datetime | None = None) -> int:
    """Remove the files of every export past its time to live; returns how many files."""
    now = now or utcnow()
    removed: list[Artifact] = []
    with store._tx(write=True) as conn:
        candidates = conn.execute(
            sa.select(jobs.c.id, jobs.c.owner, jobs.c.finished_at, jobs.c.ttl_seconds).where(
                jobs.c.status == Status.COMPLETED,
                jobs.c.ttl_seconds.is_not(None),
                jobs.c.finished_at.is_not(None),
                jobs.c.id.in_(sa.select(artifacts.c.job_id)),
            )
        ).all()
        job: Any
        for job in candidates:
            if job.finished_at + timedelta(seconds=job.ttl_seconds) > now:
                continue
            rows = conn.execute(artifacts.select().where(artifacts.c.job_id == job.id)).all()
            conn.execute(artifacts.delete().where(artifacts.c.job_id == job.id))
            removed += [artifact_from_row(row) for row in rows]
            store._event(conn, job, "expired", status=Status.COMPLETED, files=len(rows))
    for artifact in removed:
        storage.delete(artifact.storage_key)
    return len(removed)
