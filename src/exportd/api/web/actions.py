"""The buttons on a job: cancel, retry, delete. Plain form posts (they work without the
script), each checked for its session's CSRF token, doing what the JSON API's routes do
(they are called as they are), then back to the page they came from with a message."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from exportd.api import routes_exports
from exportd.api.auth import CurrentRuntime, Principal
from exportd.api.problems import Problem
from exportd.api.web.users import FormUser, local_path, redirect
from exportd.errors import InvalidTransition, JobNotFound
from exportd.jobs import Status
from exportd.runtime import Runtime

router = APIRouter(include_in_schema=False)

Action = Callable[[str, Principal, Runtime], str]


def _cancel(job_id: str, principal: Principal, runtime: Runtime) -> str:
    job = routes_exports.cancel_export(job_id, principal, runtime)
    return "cancelled" if job.status == Status.CANCELLED else "cancel_requested"


def _retry(job_id: str, principal: Principal, runtime: Runtime) -> str:
    routes_exports.retry_export(job_id, principal, runtime)
    return "retried"


def _delete(job_id: str, principal: Principal, runtime: Runtime) -> str:
    routes_exports.delete_export(job_id, principal, runtime)
    return "deleted"


ACTIONS: dict[str, Action] = {"cancel": _cancel, "retry": _retry, "delete": _delete}


def _refusal(problem: Problem) -> str:
    return {
        "too_many_active_jobs": "limit",
        "still_running": "still_running",
        "not_found": "gone",
    }.get(problem.code, "invalid_state")


async def _act(
    action: str, job_id: str, request: Request, user: FormUser, runtime: CurrentRuntime
) -> Response:
    form = await request.form()
    back = local_path(str(form.get("back") or "/"))
    if action == "delete" and back.startswith(f"/exports/{job_id}"):
        back = "/"
    try:
        flash = await run_in_threadpool(ACTIONS[action], job_id, user.principal, runtime)
    except JobNotFound:
        flash = "gone"
    except InvalidTransition:
        flash = "invalid_state"
    except Problem as problem:
        flash = _refusal(problem)
    return redirect(request, back, flash)


@router.post("/exports/{job_id}/cancel")
async def cancel(
    job_id: str, request: Request, user: FormUser, runtime: CurrentRuntime
) -> Response:
    return await _act("cancel", job_id, request, user, runtime)


@router.post("/exports/{job_id}/retry")
async def retry(job_id: str, request: Request, user: FormUser, runtime: CurrentRuntime) -> Response:
    return await _act("retry", job_id, request, user, runtime)


@router.post("/exports/{job_id}/delete")
async def delete(
    job_id: str, request: Request, user: FormUser, runtime: CurrentRuntime
) -> Response:
    return await _act("delete", job_id, request, user, runtime)
