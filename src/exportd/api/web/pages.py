"""The pages that show exports: the list (`/`), a job (`/exports/{id}`), and the two
fragments the page's script fetches when a job changes (`/exports/{id}/card` and
`/exports/{id}/detail`), rendered by the same templates as the pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from exportd.api.auth import CurrentRuntime
from exportd.api.web.templating import environment, render
from exportd.api.web.users import (
    FragmentUser,
    PageUser,
    WebUser,
    flash_message,
    local_path,
    take_flash,
)
from exportd.api.web.views import STATUSES, job_view, timeline
from exportd.errors import JobNotFound
from exportd.jobs import Event, Job, Status
from exportd.runtime import Runtime

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 20
HISTORY_LIMIT = 5000


@dataclass(frozen=True)
class Filters:
    status: str = ""
    exporter: str = ""
    owner: str = ""

    def query(self, **extra: str) -> str:
        values = {"status": self.status, "exporter": self.exporter, "owner": self.owner, **extra}
        return urlencode({k: v for k, v in values.items() if v})

    def matches(self, job: Job) -> bool:
        return (
            (not self.status or job.status == self.status)
            and (not self.exporter or job.exporter == self.exporter)
            and (not self.owner or job.owner == self.owner)
        )


def read_filters(
    user: WebUser, status: str | None, exporter: str | None, owner: str | None
) -> tuple[Filters, list[str]]:
    """The list's filters; values that cannot match anything are dropped with a note."""
    notes = []
    if status and status not in STATUSES:
        notes.append(f"There is no status “{status}”: showing every status.")
        status = None
    owner = owner.strip() if owner and user.admin else None
    return Filters(status or "", (exporter or "").strip(), owner or ""), notes


def owner_scope(user: WebUser, filters: Filters) -> str | None:
    return filters.owner or None if user.admin else user.owner


@router.get("/")
async def index(
    request: Request,
    user: PageUser,
    runtime: CurrentRuntime,
    status: str | None = None,
    exporter: str | None = None,
    owner: str | None = None,
    cursor: str | None = None,
) -> Response:
    """The signed-in owner's exports, newest first (an admin's: everyone's)."""
    filters, notes = read_filters(user, status, exporter, owner)

    def load() -> tuple[int, Any]:
        last = runtime.store.last_event_id()  # before the jobs: nothing falls in between
        page = runtime.store.list_jobs(
            owner_scope(user, filters),
            status=[Status(filters.status)] if filters.status else [],
            exporter=filters.exporter or None,
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
        return last, page

    last_event_id, page = await run_in_threadpool(load)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = render(
        request,
        "index.html",
        user=user,
        flash=flash_message(request),
        notes=notes,
        jobs=[job_view(j) for j in page.jobs],
        filters=filters,
        statuses=STATUSES,
        exporters=[spec.name for spec in runtime.registry],
        last_event_id=last_event_id,
        first_page=not cursor,
        next_query=filters.query(cursor=page.next_cursor) if page.next_cursor else None,
        newest_query=filters.query(),
        back=here,
    )
    take_flash(request, response)
    return response


def history(runtime: Runtime, job_id: str) -> tuple[list[Event], bool]:
    """The job's events, oldest first, at most `HISTORY_LIMIT` (and whether that cut it)."""
    events: list[Event] = []
    while len(events) < HISTORY_LIMIT:
        after = events[-1].id if events else 0
        batch = runtime.store.events_after(after, job_id=job_id, limit=500)
        events.extend(batch)
        if len(batch) < 500:
            return events, False
    return events, True


def detail_context(runtime: Runtime, user: WebUser, job_id: str) -> dict[str, Any]:
    last_event_id = runtime.store.last_event_id()
    job = runtime.store.get(job_id, user.principal.scope)
    events, cut = history(runtime, job_id)
    return {
        "job": job_view(job),
        "timeline": timeline(events),
        "history_cut": cut,
        "last_event_id": last_event_id,
        "user": user,
    }


@router.get("/exports/{job_id}")
async def job_page(
    job_id: str, request: Request, user: PageUser, runtime: CurrentRuntime
) -> Response:
    """One export: params, options, attempts, error, files and its timeline."""
    try:
        context = await run_in_threadpool(detail_context, runtime, user, job_id)
    except JobNotFound:
        return render(request, "not_found.html", status=404, user=user)
    response = render(
        request,
        "job.html",
        flash=flash_message(request),
        back=request.url.path,
        **context,
    )
    take_flash(request, response)
    return response


def fragment(template: str, **context: Any) -> HTMLResponse:
    body = environment.get_template(template).render(**context)
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/exports/{job_id}/card")
async def job_card(
    job_id: str,
    user: FragmentUser,
    runtime: CurrentRuntime,
    back: str | None = None,
    match: bool = False,
    status: str | None = None,
    exporter: str | None = None,
    owner: str | None = None,
) -> Response:
    """The job's card in the list; with `match`, 204 when it is not one the list's
    filters show (a new job the page heard of)."""
    try:
        job = await run_in_threadpool(runtime.store.get, job_id, user.principal.scope)
    except JobNotFound:
        return Response(status_code=404)
    filters, _ = read_filters(user, status, exporter, owner)
    if match and not filters.matches(job):
        return Response(status_code=204)
    return fragment("_card.html", job=job_view(job), user=user, back=local_path(back))


@router.get("/exports/{job_id}/detail")
async def job_detail(job_id: str, user: FragmentUser, runtime: CurrentRuntime) -> Response:
    """The changing part of the job page."""
    try:
        context = await run_in_threadpool(detail_context, runtime, user, job_id)
    except JobNotFound:
        return Response(status_code=404)
    return fragment("_detail.html", back=f"/exports/{job_id}", **context)
