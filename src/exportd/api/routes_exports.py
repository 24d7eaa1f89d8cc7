"""`/v1/exports`: create, list, read, cancel, retry, delete, download, links."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import pydantic
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import Field

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds, Principal
from exportd.api.links import issue_link
from exportd.api.openapi import problems
from exportd.api.problems import Problem, field_errors, invalid, invalid_field
from exportd.api.routes_webhooks import check_webhook_url
from exportd.api.schemas import ExportRequest, JobOut, JobPage, StatusFilter, job_out
from exportd.api.validation import Cursor, IdText, LabelFilter, Text, Timestamp
from exportd.config import Settings
from exportd.errors import ActiveLimitReached, PermanentError, RetryLimitReached
from exportd.exporters import ExporterSpec
from exportd.exporters.params import error_message
from exportd.formats import COMPRESSIONS, FORMATS, OutputPlan, plan_output
from exportd.formats.plan import WriterOptions
from exportd.jobs import Artifact, Job, NewJob, Status, utcnow
from exportd.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["exports"], dependencies=[KnownPathIds])

IDEMPOTENCY_WINDOW = timedelta(hours=24)
DELETE_WAIT_SECONDS = 10.0


def build_job(runtime: Runtime, principal: Principal, body: ExportRequest) -> NewJob:
    """Validate a request completely (exporter, params, format, options, permissions,
    limits) before anything is queued: whatever would fail the job at once is a 422."""
    if body.exporter not in runtime.registry:
        names = [spec.name for spec in runtime.registry]
        detail = f"no exporter named {body.exporter!r}; available: {', '.join(names)}"
        raise Problem(422, "unknown_exporter", detail, available=names)
    spec = runtime.registry.get(body.exporter)
    settings = runtime.settings
    try:
        params = spec.params.model_validate(body.params, context={"settings": settings})
    except pydantic.ValidationError as exc:
        errors = [
            {**e, "msg": error_message(spec.params, raw)}
            for e, raw in zip(field_errors(exc.errors(), ["params"]), exc.errors(), strict=True)
        ]
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
    check_quota(runtime, principal.owner)
    if body.notify is not None and body.notify.webhook_url:
        check_webhook_url(runtime, body.notify.webhook_url)
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
        labels=body.labels,
        notify=body.notify.model_dump() if body.notify else None,
        created_by=principal.actor,
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


def check_quota(runtime: Runtime, owner: str) -> None:
    """Refuse new exports from an owner whose stored files already fill its quota."""
    stored, own = runtime.store.stored_bytes(owner)
    quota = own if own is not None else runtime.settings.owner_storage_quota
    if stored >= quota:
        raise Problem(
            422,
            "storage_quota_exceeded",
            f"the owner's files take {stored:,} bytes of a {quota:,}-byte quota; delete "
            "exports or wait for them to expire",
            bytes_stored=stored,
            quota_bytes=quota,
        )


def too_many_active(exc: ActiveLimitReached) -> Problem:
    return Problem(
        429,
        "too_many_active_jobs",
        str(exc),
        headers={"Retry-After": "5"},
        active=exc.active,
        limit=exc.limit,
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
    limit = runtime.settings.max_active_per_owner
    try:
        if idempotency_key is None:
            job = runtime.store.enqueue(new, active_limit=limit)
        else:
            digest = request_hash(body)
            job, created, stored_hash = runtime.store.enqueue_idempotent(
                new,
                key=idempotency_key,
                request_hash=digest,
                window=IDEMPOTENCY_WINDOW,
                active_limit=limit,
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
    except ActiveLimitReached as exc:
        raise too_many_active(exc) from None
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
    label: Annotated[
        list[LabelFilter] | None,
        Query(description="`key:value`; repeat to require several labels"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor | None = None,
) -> Response:
    """The caller's jobs, newest first; pass `next_cursor` back as `cursor` for more."""
    page = runtime.store.list_jobs(
        principal.scope,
        status=[Status(s) for s in status or []],
        exporter=exporter,
        batch_id=batch_id,
        created_after=created_after,
        created_before=created_before,
        labels=[_label(text) for text in label or []],
        limit=limit,
        cursor=cursor,
    )
    return model_response(
        JobPage(items=[job_out(j) for j in page.jobs], next_cursor=page.next_cursor)
    )


def model_response(body: pydantic.BaseModel) -> Response:
    """`body` as JSON, already built from our own model: returning a `Response` spares
    FastAPI's second validation of the `response_model`, which for a sync route runs in
    the thread pool (one more hop per request). The OpenAPI still names the model."""
    return Response(body.model_dump_json(), media_type="application/json")


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key:
        raise invalid_field(["query", "label"], f"{text!r}: use key:value", "value_error")
    return key, value


@router.get("/exports/{job_id}", response_model=JobOut, responses=problems(404))
def get_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> Response:
    return model_response(job_out(runtime.store.get(job_id, principal.scope)))


@router.post("/exports/{job_id}/cancel", response_model=JobOut, responses=problems(404, 409))
def cancel_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> JobOut:
    """Queued jobs are cancelled at once; running ones stop within about a second."""
    return job_out(runtime.store.request_cancel(job_id, principal.scope, actor=principal.actor))


@router.post("/exports/{job_id}/retry", response_model=JobOut, responses=problems(404, 409, 429))
def retry_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> JobOut:
    """Queue a failed or cancelled job again, as a new series of attempts."""
    try:
        job = runtime.store.retry(
            job_id,
            principal.scope,
            active_limit=runtime.settings.max_active_per_owner,
            max_retries=runtime.settings.max_manual_retries,
            actor=principal.actor,
        )
    except ActiveLimitReached as exc:
        raise too_many_active(exc) from None
    except RetryLimitReached as exc:
        raise Problem(409, "retry_limit_reached", str(exc)) from None
    return job_out(job)


@router.delete("/exports/{job_id}", status_code=204, responses=problems(404, 409))
def delete_export(job_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> Response:
    """Cancel the job if needed, then remove it and its files."""
    job = runtime.store.request_cancel(job_id, principal.scope, actor=principal.actor)
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    while job.status == Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
        job = runtime.store.get(job_id, principal.scope)
    if job.status == Status.RUNNING:
        raise Problem(
            409, "still_running", "the job is still stopping", headers={"Retry-After": "2"}
        )
    deleted = runtime.store.delete(job_id, principal.scope, actor=principal.actor)
    for artifact in deleted.artifacts:
        runtime.storage.delete(artifact.storage_key)
    return Response(status_code=204)


def pick_artifact(job: Job, name: str | None) -> Artifact:
    if job.status != Status.COMPLETED:
        raise Problem(409, "not_ready", f"the job is {job.status}, not completed")
    if not job.artifacts or (job.expires_at is not None and job.expires_at <= utcnow()):
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
    """Redirect to a link for the file that needs no token and expires after
    `EXPORTD_LINK_TTL_SECONDS`: on S3 storage a presigned URL of the bucket (counted as a
    download when it is issued, since the transfer never passes through exportd), else
    (or with `EXPORTD_S3_DOWNLOADS=proxy`) exportd's own `/v1/files/…` link (counted
    once a download reaches the file's last byte). `X-Checksum-Sha256` is the file's
    sha256, `X-Expires-At` the link's expiry (Unix time)."""
    artifact = pick_artifact(runtime.store.get(job_id, principal.scope), name)
    link = issue_link(runtime, artifact)
    response = RedirectResponse(link.url, status_code=307)
    response.headers["X-Expires-At"] = str(link.expires_at)
    response.headers["X-Checksum-Sha256"] = artifact.sha256
    return response


class LinkOut(pydantic.BaseModel):
    url: str = Field(description="absolute; GET it without a token (Range works)")
    expires_at: datetime
    sha256: str
    size: int


@router.post(
    "/exports/{job_id}/links", response_model=LinkOut, responses=problems(404, 409, 410, 422)
)
def create_link(
    job_id: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    name: Annotated[Text | None, Query(max_length=255)] = None,
) -> LinkOut:
    """A link to the file (`?name=` picks one, as for download) to hand to someone
    else: the same link `download` redirects to, as an absolute URL with its expiry,
    sha256 and size. A presigned link is counted as a download when it is issued."""
    artifact = pick_artifact(runtime.store.get(job_id, principal.scope), name)
    link = issue_link(runtime, artifact)
    url = link.url if link.presigned else str(request.base_url).rstrip("/") + link.url
    return LinkOut(
        url=url,
        expires_at=datetime.fromtimestamp(link.expires_at, UTC),
        sha256=artifact.sha256,
        size=artifact.size,
    )
