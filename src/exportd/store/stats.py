"""`StatsStore`: the numbers behind `/metrics` and `/v1/stats`, each read so that its cost
is bounded by the queue or by a time window, never by the size of the jobs table.

- Queue depth counts only queued and running jobs, through their partial indexes
  (`ix_exportd_jobs_queue`, `ix_exportd_jobs_running`), for one owner too.
- Finished jobs are read through the partial `ix_exportd_jobs_finished` index on
  `finished_at`, within a window, and at most `SAMPLE` of them (the most recent) feed the
  duration percentiles: PostgreSQL computes them with `percentile_cont`, SQLite in
  Python over the same rows.
- Stored bytes and downloads come from the owners table (one row per owner), the same
  numbers as `/v1/usage`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.jobs import Status, utcnow
from exportd.store.base import StoreBase
from exportd.store.schema import jobs, owners

SAMPLE = 100_000
"""The most completed jobs one stats request reads for its percentiles."""

FINISHED_WINDOW = timedelta(hours=24)
"""The window of the `finished` counts."""

_QUEUED: sa.ColumnElement[str] = sa.literal_column("'queued'")
_RUNNING: sa.ColumnElement[str] = sa.literal_column("'running'")
_COMPLETED: sa.ColumnElement[str] = sa.literal_column("'completed'")
"""Inlined, so both dialects see that the partial indexes apply."""


@dataclass(frozen=True)
class QueueDepth:
    queued: int
    running: int
    oldest_ready_seconds: float
    """How long the longest-waiting runnable queued job has waited (0: none waits)."""


@dataclass(frozen=True)
class StorageTotals:
    bytes_stored: int
    artifacts: int
    downloads: int


@dataclass(frozen=True)
class KindStats:
    """Completed jobs of one exporter and format within the window."""

    exporter: str
    format: str
    completed: int
    p50_seconds: float
    p95_seconds: float
    rows: int
    rows_per_second: float | None
    """Rows of these jobs over the seconds they ran (None: they took no measurable time)."""


@dataclass(frozen=True)
class JobStats:
    owner: str | None
    since: datetime
    until: datetime
    jobs: dict[str, int]
    """Queued and running now."""
    finished: dict[str, int]
    """Completed, failed and cancelled within `FINISHED_WINDOW`."""
    kinds: list[KindStats]
    sampled: int
    """How many completed jobs the percentiles are computed over (at most `SAMPLE`)."""
    storage: StorageTotals


def finished_since(since: datetime, owner: str | None) -> sa.ColumnElement[bool]:
    """Jobs that finished at or after `since` (in the partial index's terms)."""
    clause = sa.and_(jobs.c.finished_at.is_not(None), jobs.c.finished_at >= since)
    return clause if owner is None else sa.and_(clause, jobs.c.owner == owner)


def finished_counts_query(since: datetime, owner: str | None) -> sa.Select[Any]:
    return (
        sa.select(jobs.c.status, sa.func.count())
        .where(finished_since(since, owner))
        .group_by(jobs.c.status)
    )


def queued_count_query(owner: str | None) -> sa.Select[Any]:
    """Queued jobs (of `owner`), counted over the queue's partial index: the queue is
    materialised first, so the planner cannot take the owner's index and walk its whole
    history instead."""
    queued = sa.select(jobs.c.owner).where(jobs.c.status == _QUEUED).cte("queued")
    queued = queued.prefix_with("MATERIALIZED")
    query = sa.select(sa.func.count()).select_from(queued)
    return query if owner is None else query.where(queued.c.owner == owner)


def recent_completed_query(since: datetime, owner: str | None, *columns: Any) -> sa.Select[Any]:
    """The most recent `SAMPLE` completed jobs that finished since `since`."""
    return (
        sa.select(*columns)
        .where(finished_since(since, owner), jobs.c.status == _COMPLETED)
        .where(jobs.c.started_at.is_not(None))
        .order_by(jobs.c.finished_at.desc())
        .limit(SAMPLE)
    )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The `fraction` percentile of ascending `ordered`, interpolated between the two
    nearest values exactly as PostgreSQL's `percentile_cont` does."""
    if not ordered:
        return 0.0
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _kind(exporter: str, fmt: str, durations: list[float], rows: int) -> KindStats:
    durations.sort()
    seconds = sum(durations)
    return KindStats(
        exporter=exporter,
        format=fmt,
        completed=len(durations),
        p50_seconds=percentile(durations, 0.5),
        p95_seconds=percentile(durations, 0.95),
        rows=rows,
        rows_per_second=rows / seconds if seconds > 0 else None,
    )


class StatsStore(StoreBase):
    def queue_depth(self, now: datetime | None = None) -> QueueDepth:
        """Queued and running jobs, and the wait of the oldest runnable one."""
        now = now or utcnow()
        queued = sa.select(sa.func.count(), sa.func.min(jobs.c.run_after)).where(
            jobs.c.status == _QUEUED
        )
        ready = sa.select(sa.func.min(jobs.c.run_after)).where(
            jobs.c.status == _QUEUED, jobs.c.run_after <= now
        )
        running = sa.select(sa.func.count()).where(jobs.c.status == _RUNNING)
        with self._tx() as conn:
            queued_count = int(conn.execute(queued).one()[0])
            oldest = conn.execute(ready).scalar()
            running_count = int(conn.execute(running).scalar_one())
        waited = (now - oldest).total_seconds() if oldest is not None else 0.0
        return QueueDepth(queued_count, running_count, max(waited, 0.0))

    def storage_totals(self, owner: str | None = None) -> StorageTotals:
        """One owner's stored bytes, files and downloads, or every owner's together."""
        query = sa.select(
            sa.func.coalesce(sa.func.sum(owners.c.bytes_stored), 0),
            sa.func.coalesce(sa.func.sum(owners.c.artifacts), 0),
            sa.func.coalesce(sa.func.sum(owners.c.downloads), 0),
        )
        if owner is not None:
            query = query.where(owners.c.owner == owner)
        with self._tx() as conn:
            size, files, downloads = conn.execute(query).one()
        return StorageTotals(int(size), int(files), int(downloads))

    def job_stats(
        self, owner: str | None, *, window: timedelta, now: datetime | None = None
    ) -> JobStats:
        """Jobs by status, finished counts of the last 24 h, and per exporter and format
        the p50/p95 run time and rows per second of jobs completed within `window`."""
        now = now or utcnow()
        since = now - window
        with self._tx() as conn:
            active = self._active_counts(conn, owner)
            counted = conn.execute(finished_counts_query(now - FINISHED_WINDOW, owner)).all()
            finished = {str(status): int(n) for status, n in counted}
            kinds, sampled = self._kinds(conn, since, owner)
        return JobStats(
            owner=owner,
            since=since,
            until=now,
            jobs=active,
            finished={s: finished.get(s, 0) for s in ("completed", "failed", "cancelled")},
            kinds=kinds,
            sampled=sampled,
            storage=self.storage_totals(owner),
        )

    def _active_counts(self, conn: Connection, owner: str | None) -> dict[str, int]:
        running = sa.select(sa.func.count()).where(jobs.c.status == _RUNNING)
        if owner is not None:
            running = running.where(jobs.c.owner == owner)
        return {
            str(Status.QUEUED): int(conn.execute(queued_count_query(owner)).scalar_one()),
            str(Status.RUNNING): int(conn.execute(running).scalar_one()),
        }

    def _kinds(
        self, conn: Connection, since: datetime, owner: str | None
    ) -> tuple[list[KindStats], int]:
        if self.dialect_name == "postgresql":
            return self._kinds_in_sql(conn, since, owner)
        rows = conn.execute(
            recent_completed_query(
                since,
                owner,
                jobs.c.exporter,
                jobs.c.format,
                jobs.c.started_at,
                jobs.c.finished_at,
                jobs.c.progress_done,
            )
        ).all()
        groups: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
        for row in rows:
            durations, done = groups.setdefault((row.exporter, row.format), ([], []))
            durations.append(max((row.finished_at - row.started_at).total_seconds(), 0.0))
            done.append(int(row.progress_done))
        kinds = [_kind(exp, fmt, secs, sum(done)) for (exp, fmt), (secs, done) in groups.items()]
        return sorted(kinds, key=lambda k: (k.exporter, k.format)), len(rows)

    def _kinds_in_sql(
        self, conn: Connection, since: datetime, owner: str | None
    ) -> tuple[list[KindStats], int]:
        seconds = sa.cast(sa.extract("epoch", jobs.c.finished_at - jobs.c.started_at), sa.Float)
        recent = recent_completed_query(
            since,
            owner,
            jobs.c.exporter,
            jobs.c.format,
            sa.func.greatest(seconds, 0.0).label("seconds"),
            jobs.c.progress_done.label("done"),
        ).subquery()
        query = sa.select(
            recent.c.exporter,
            recent.c.format,
            sa.func.count(),
            sa.func.percentile_cont(0.5).within_group(recent.c.seconds),
            sa.func.percentile_cont(0.95).within_group(recent.c.seconds),
            sa.func.sum(recent.c.done),
            sa.func.sum(recent.c.seconds),
        ).group_by(recent.c.exporter, recent.c.format)
        kinds = []
        for exporter, fmt, count, p50, p95, done, total in conn.execute(query):
            rows = int(done or 0)
            kinds.append(
                KindStats(
                    exporter=exporter,
                    format=fmt,
                    completed=int(count),
                    p50_seconds=float(p50),
                    p95_seconds=float(p95),
                    rows=rows,
                    rows_per_second=rows / float(total) if total else None,
                )
            )
        return sorted(kinds, key=lambda k: (k.exporter, k.format)), sum(k.completed for k in kinds)
