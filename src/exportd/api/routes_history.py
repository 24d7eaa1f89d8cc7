"""`/v1/exports/{id}/history` (a job's events, who caused each), `/v1/audit` (tombstones
of deleted jobs) and `/v1/stats` (an owner's jobs, durations and throughput)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds, Principal
from exportd.api.openapi import problems
from exportd.api.problems import Problem
from exportd.api.validation import OwnerName, RowId
from exportd.config import parse_duration
from exportd.jobs import Event
from exportd.store.sql import AuditEntry
from exportd.store.stats import SAMPLE, JobStats

router = APIRouter(prefix="/v1", tags=["history"], dependencies=[KnownPathIds])

WORKER = "worker"
"""The actor of the events a worker writes on its own (stored as no actor)."""
MAX_WINDOW = timedelta(days=7)
MIN_WINDOW = timedelta(minutes=1)


class HistoryEntry(BaseModel):
    id: int = Field(description="the event id; pass the last one seen as `after`")
    type: str
    at: datetime
    status: str | None
    actor: str = Field(description="the token's `owner/name`, or `worker`")
    data: dict[str, Any]


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next_cursor: int | None = Field(description="`after` for the next page; null: the last")


class AuditOut(BaseModel):
    id: int
    owner: str
    job_id: str
    action: str
    actor: str | None
    at: datetime
    data: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: int | None = Field(description="`before` for the next page; null: the last")


class KindOut(BaseModel):
    exporter: str
    format: str
    completed: int
    p50_seconds: float
    p95_seconds: float
    rows: int
    rows_per_second: float | None


class StorageOut(BaseModel):
    bytes_stored: int
    artifacts: int
    downloads: int


class StatsOut(BaseModel):
    owner: str | None = Field(description="null: every owner (admin tokens)")
    since: datetime
    until: datetime
    jobs: dict[str, int] = Field(description="queued and running now")
    finished_24h: dict[str, int] = Field(description="completed, failed, cancelled in 24 h")
    by_kind: list[KindOut] = Field(
        description="per exporter and format: jobs completed in the window, p50/p95 of the "
        "completed attempt's run time, rows per second"
    )
    sampled: int = Field(description=f"completed jobs read (the most recent, at most {SAMPLE})")
    storage: StorageOut


def history_entry(event: Event) -> HistoryEntry:
    data = dict(event.data)
    status = data.get("status")
    return HistoryEntry(
        id=event.id,
        type=event.type,
        at=event.created_at,
        status=str(status) if status is not None else None,
        actor=event.actor or WORKER,
        data=data,
    )


@router.get("/exports/{job_id}/history", response_model=HistoryPage, responses=problems(404, 422))
def job_history(
    job_id: str,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    after: Annotated[RowId, Query(description="the last event id seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> HistoryPage:
    """The job's events in order — created, started, progress, retries, the end — each
    with who caused it."""
    events = runtime.store.history(job_id, principal.scope, after=after, limit=limit + 1)
    more = len(events) > limit
    items = [history_entry(e) for e in events[:limit]]
    return HistoryPage(items=items, next_cursor=items[-1].id if more and items else None)


def audit_out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id,
        owner=entry.owner,
        job_id=entry.job_id,
        action=entry.action,
        actor=entry.actor,
        at=entry.created_at,
        data=entry.data,
    )


def scope_for(principal: Principal, owner: str | None, what: str) -> str | None:
    """The owner to read for: the caller's own, or (admins) `owner` or everyone."""
    if principal.admin:
        return owner
    if owner is not None and owner != principal.owner:
        raise Problem(403, "forbidden", f"only an admin token can read another owner's {what}")
    return principal.owner


@router.get("/audit", response_model=AuditPage, responses=problems(403, 422))
def audit(
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    owner: OwnerName | None = None,
    before: Annotated[RowId | None, Query(description="`next_cursor` of a page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Deleted jobs, newest first: who deleted what, and when. Admins see every owner's
    (`?owner=` narrows it)."""
    scope = scope_for(principal, owner, "audit trail")
    entries = runtime.store.audit_list(scope, before=before, limit=limit + 1)
    more = len(entries) > limit
    items = [audit_out(e) for e in entries[:limit]]
    return AuditPage(items=items, next_cursor=items[-1].id if more and items else None)


def parse_window(text: str) -> timedelta:
    try:
        seconds = float(parse_duration(text))
    except ValueError as exc:
        raise Problem(422, "validation_error", f"window: {exc}") from None
    # Compared as seconds first: a timedelta of 10**400 seconds would overflow.
    if not MIN_WINDOW.total_seconds() <= seconds <= MAX_WINDOW.total_seconds():
        raise Problem(422, "validation_error", "window: between 1m and 7d")
    return timedelta(seconds=seconds)


def stats_out(found: JobStats) -> StatsOut:
    return StatsOut(
        owner=found.owner,
        since=found.since,
        until=found.until,
        jobs=found.jobs,
        finished_24h=found.finished,
        by_kind=[KindOut(**kind.__dict__) for kind in found.kinds],
        sampled=found.sampled,
        storage=StorageOut(**found.storage.__dict__),
    )


@router.get("/stats", response_model=StatsOut, responses=problems(403, 422))
def stats(
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    owner: OwnerName | None = None,
    window: Annotated[
        str,
        Query(
            description="how far back the durations look: 1m to 7d (e.g. 1h, 7d)",
            pattern=r"^\s*\d+(\.\d+)?\s*[smhdwSMHDW]?\s*$",
        ),
    ] = "24h",
) -> StatsOut:
    """The caller's jobs by status, what finished in the last 24 h, p50/p95 run time and
    rows per second by exporter and format over `window`, and stored bytes and downloads.
    Admins get every owner's together, or one `?owner=`'s."""
    scope = scope_for(principal, owner, "stats")
    found = runtime.store.job_stats(scope, window=parse_window(window))
    return stats_out(found)


__all__ = ["router"]
