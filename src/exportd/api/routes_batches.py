"""`/v1/batches`: many exports in one all-or-nothing request."""

from __future__ import annotations

from fastapi import APIRouter, Response

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds
from exportd.api.openapi import problems
from exportd.api.problems import Problem
from exportd.api.routes_exports import build_job, too_many_active
from exportd.api.schemas import BatchOut, BatchRequest
from exportd.errors import ActiveLimitReached
from exportd.runtime import Runtime
from exportd.store.tokens import Batch

router = APIRouter(prefix="/v1", tags=["batches"], dependencies=[KnownPathIds])


def batch_out(runtime: Runtime, batch: Batch) -> BatchOut:
    jobs = runtime.store.list_jobs(None, batch_id=batch.id, limit=10_000).jobs
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    finished = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))
    totals = [j.progress for j in jobs if j.progress.total]
    done = sum(min(p.done, p.total or 0) for p in totals)
    total = sum(p.total or 0 for p in totals)
    progress = {
        "jobs_finished": finished,
        "jobs_total": batch.size,
        "percent": round(100.0 * finished / batch.size, 2) if batch.size else 100.0,
        "rows_done": done,
        "rows_total": total,
    }
    return BatchOut(
        id=batch.id,
        size=batch.size,
        created_at=batch.created_at,
        counts=counts,
        progress=progress,
        job_ids=sorted(j.id for j in jobs),
        done=finished == batch.size,
    )


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchOut,
    responses=problems(400, 403, 413, 422, 429),
)
def create_batch(
    body: BatchRequest, principal: CurrentPrincipal, runtime: CurrentRuntime, response: Response
) -> BatchOut:
    limit = runtime.settings.max_batch_size
    if len(body.exports) > limit:
        raise Problem(422, "batch_too_large", f"a batch holds at most {limit} exports")
    news = []
    for index, request in enumerate(body.exports):
        try:
            news.append(build_job(runtime, principal, request))
        except Problem as problem:
            problem.extra["index"] = index
            problem.detail = f"exports[{index}]: {problem.detail}"
            raise
    try:
        batch, _ = runtime.store.enqueue_many(
            news, batch_owner=principal.owner, active_limit=runtime.settings.max_active_per_owner
        )
    except ActiveLimitReached as exc:
        raise too_many_active(exc) from None
    assert batch is not None
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return batch_out(runtime, batch)


@router.get("/batches/{batch_id}", response_model=BatchOut, responses=problems(404))
def get_batch(batch_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> BatchOut:
    return batch_out(runtime, runtime.store.get_batch(batch_id, principal.scope))
