"""`/v1/exports`: create, list, read, cancel, retry, delete, download."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Annotated, Any

import orjson
import pydantic
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import RedirectResponse

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds, Principal
from exportd.api.openapi import problems
from exportd.api.problems import Problem, field_errors, invalid, invalid_field
from exportd.api.schemas import ExportRequest, JobOut, JobPage, StatusFilter, job_out
from exportd.api.validation import Cursor, IdText, Text, Timestamp
from exportd.config import Settings
from exportd.errors import PermanentError
from exportd.exporters import ExporterSpec
from exportd.formats import COMPRESSIONS, FORMATS, OutputPlan, plan_output
from exportd.formats.plan import WriterOptions
from exportd.jobs import Artifact, Job, NewJob, Status
from exportd.runtime import Runtime
from exportd.storage.signing import sign

router = APIRouter(prefix="/v1", tags=["exports"], dependencies=[KnownPathIds])

IDEMPOTENCY_WINDOW = timedelta(hours=24)
DELETE_WAIT_SECONDS = 10.0


def build_job(runtime: Runtime, principal: Principal, body: ExportRequest) -> NewJob:
    """Validate a request completely (exporter, params, format, options, permissions,
    limits) before anything is queued: whatever would fail the job at once is a 422."""
    if body.exporter not in runtime.registry:
        raise Problem(422, "unknown_exporter", f"no exporter named {body.exporter!r}")
    spec = runtime.registry.get(body.exporter)
    settings = runtime.settings
    try:
        params = spec.params.model_validate(body.params, context={"settings": settings})
    except pydantic.ValidationError as exc:
        errors = field_errors(exc.errors(), ["params"])
        raise invalid("invalid_params", "invalid params", errors) from exc
    check_output(spec, body, settings)
    if body.ttl_seconds is not None and body.ttl_seconds > settings.max_ttl_seconds:
        raise invalid_field(
            ["body", "ttl_seconds"],
            f"Input should be less than or equal to {settings.max_ttl_seconds}",
            "less_than_equal",
        )
    spec.authorize(params, principal.admin)
    spec.check(params, settings)
    return NewJob(
        owner=principal.owner,
        exporter=spec.name,
        params=params.model_dump(mode="json"),
        format=body.format,
        compression=body.compression,
        options=body.options,
        priority=body.priority,
        max_attempts=body.max_attempts or settings.max_attempts,
        max_runtime_seconds=body.max_runtime_seconds or settings.max_runtime_seconds,
        filename=body.filename,
        ttl_seconds=body.ttl_seconds,
    )


def check_output(spec: ExporterSpec, body: ExportRequest, settings: Settings) -> OutputPlan:
    """Plan the job's files now, as its worker will, so that a bad format, compression
    or option is refused here and never fails the job when it runs."""
    try:
        options = WriterOptions.model_validate(body.options)
    except pydantic.ValidationError as exc:
        raise invalid(
            "invalid_options", "invalid options", field_errors(exc.errors(), ["options"])
        ) from None
    allowed = [f for f in spec.formats if f in FORMATS]
    if body.format not in FORMATS:
        raise Problem(422, "invalid_format", f"format: unknown format (use {', '.join(allowed)})")
    if options.formats and len(set(options.formats)) < len(options.formats):
        raise invalid(
            "invalid_options",
            "invalid options",
            [
                {
                    "loc": ["options", "formats"],
                    "msg": "List should name each format once",
                    "type": "unique_items",
                }
            ],
        )
    for name in options.formats or [body.format]:
        if name not in allowed:
            field = "options.formats" if options.formats else "format"
            raise Problem(
                422,
                "invalid_format",
                f"{field}: {spec.name!r} cannot write {name!r} (use {', '.join(allowed)})",
            )
    if body.compression not in COMPRESSIONS:
        allowed = list(COMPRESSIONS)
        raise Problem(
            422,
            "invalid_compression",
            f"compression: unknown compression (use {', '.join(allowed)})",
        )
    try:
        return plan_output(
            job_id="0",
            format=body.format,
            compression=body.compression,
            options=body.options,
            filename=body.filename,
            allowed=spec.formats,
            document=spec.kind == "document",
            multi_file=spec.multi_file,
            max_parts=settings.max_parts,
        )
    except PermanentError as exc:
        raise Problem(422, exc.code, f"options: {exc.message}") from None


def check_active_limit(runtime: Runtime, owner: str, adding: int = 1) -> None:
    limit = runtime.settings.max_active_per_owner
    active = runtime.store.count_active(owner)
    if active + adding > limit:
        raise Problem(
            429,
            "too_many_active_jobs",
            f"{active} jobs are queued or running; the limit is {limit}",
            headers={"Retry-After": "5"},
            active=active,
            limit=limit,
        )


def request_hash(body: ExportRequest) -> str:
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


@router.post(
    "/exports",
    status_code=202,
    response_model=JobOut,
    responses={
        200: {"description": "the job this Idempotency-Key already created", "model": JobOut},
        **problems(400, 403, 409, 413, 422, 429),
    },
)
def create_export(
    body: ExportRequest,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    response: Response,
    idempotency_key: Annotated[
        Text | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> JobOut:
    """Queue an export; `Idempotency-Key` makes retries of this request safe for 24 h."""
    new = build_job(runtime, principal, body)
    if idempotency_key is None:
        check_active_limit(runtime, principal.owner)
        job = runtime.store.enqueue(new)
    else:
        digest = request_hash(body)
        existing = runtime.store.find_idempotent(principal.owner, idempotency_key)
        if existing is None:
            check_active_limit(runtime, principal.owner)
        job, created, stored_hash = runtime.store.enqueue_idempotent(
            new, key=idempotency_key, request_hash=digest, window=IDEMPOTENCY_WINDOW
        )
        if not created and stored_hash != digest:
            raise Problem(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
                job_id=job.id,
            )
        if not created:
            response.status_code = 200
    response.headers["Location"] = f"/v1/exports/{job.id}"
    return job_out(job)


@router.get("/exports", response_model=JobPage, responses=problems(422))
def list_exports(
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    status: Annotated[list[StatusFilter] | None, Query()] = None,
    exporter: Annotated[Text | None, Query(max_length=200)] = None,
    batch_id: IdText | None = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor | None = None,
) -> JobPage:
    """The caller's jobs, newest first; pass `next_cursor` back as `cursor` for more."""
    page = runtime.store.list_jobs(
        principal.scope,
        status=[Status(s) for s in status or []],
        exporter=exporter,
        batch_id=batch_id,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
    )
    return JobPage(items=[job_out(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/exports/{job_id}", response_model=JobOut, responses=problems(404))
def get_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> JobOut:
    return job_out(runtime.store.get(job_id, principal.scope))


@router.post("/exports/{job_id}/cancel", response_model=JobOut, responses=problems(404, 409))
def cancel_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> JobOut:
    """Queued jobs are cancelled at once; running ones stop within about a second."""
    return job_out(runtime.store.request_cancel(job_id, principal.scope))


@router.post("/exports/{job_id}/retry", response_model=JobOut, responses=problems(404, 409, 429))
def retry_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> JobOut:
    """Queue a failed or cancelled job again, as a new series of attempts."""
    job = runtime.store.get(job_id, principal.scope)
    if job.status not in (Status.FAILED, Status.CANCELLED):
        raise Problem(409, "invalid_state", f"a {job.status} job cannot be retried")
    check_active_limit(runtime, job.owner)
    return job_out(runtime.store.retry(job_id, principal.scope))


@router.delete("/exports/{job_id}", status_code=204, responses=problems(404, 409))
def delete_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> Response:
    """Cancel the job if needed, then remove it and its files."""
    job = runtime.store.request_cancel(job_id, principal.scope)
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    while job.status == Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
        job = runtime.store.get(job_id, principal.scope)
    if job.status == Status.RUNNING:
        raise Problem(
            409, "still_running", "the job is still stopping", headers={"Retry-After": "2"}
        )
    deleted = runtime.store.delete(job_id, principal.scope)
    for artifact in deleted.artifacts:
        runtime.storage.delete(artifact.storage_key)
    return Response(status_code=204)


def pick_artifact(job: Job, name: str | None) -> Artifact:
    if job.status != Status.COMPLETED:
        raise Problem(409, "not_ready", f"the job is {job.status}, not completed")
    if not job.artifacts:
        raise Problem(410, "expired", "the files of this export have expired")
    if name is not None:
        for artifact in job.artifacts:
            if artifact.name == name:
                return artifact
        raise Problem(404, "artifact_not_found", f"the job has no file named {name!r}")
    if len(job.artifacts) == 1:
        return job.artifacts[0]
    bundles = [a for a in job.artifacts if a.content_type == "application/zip"]
    if len(bundles) == 1:
        return bundles[0]
    names = [a.name for a in job.artifacts]
    raise Problem(400, "artifact_name_required", "pass ?name= to choose a file", names=names)


@router.get(
    "/exports/{job_id}/download",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {
            "description": "to the signed link of the file",
            "headers": {
                "Location": {"schema": {"type": "string"}},
                "X-Expires-At": {"schema": {"type": "integer"}, "description": "Unix time"},
            },
        },
        **problems(400, 404, 409, 410, 422),
    },
)
def download_export(
    job_id: str,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    name: Annotated[Text | None, Query(max_length=255)] = None,
) -> Any:
    """Redirect to a signed link for the file; the link needs no token and expires."""
    artifact = pick_artifact(runtime.store.get(job_id, principal.scope), name)
    expires_at = int(time.time()) + runtime.settings.link_ttl_seconds
    link = sign(runtime.secret_key(), job_id, artifact.name, expires_at)
    url = f"/v1/files/{link}"
    response = RedirectResponse(url, status_code=307)
    response.headers["X-Expires-At"] = str(expires_at)
    return response
