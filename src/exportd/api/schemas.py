"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exportd.api.validation import INT32_MAX, JSON_NUMBER, Filename, JsonObject, Text
from exportd.jobs import Job, Status, utcnow

MAX_QUOTA_BYTES = 2**53
"""The largest quota (8 PiB): exact as an integer and as a JSON Schema float bound."""
MAX_RUNTIME_SECONDS = 7 * 86400
"""The longest `max_runtime_seconds` a request may ask for."""


LABEL_KEY = r"^[A-Za-z0-9_.\-]{1,64}$"
_NOT_IN_ADDRESS = r"@<>\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
EMAIL = rf"^[^{_NOT_IN_ADDRESS}]{{1,64}}@[^{_NOT_IN_ADDRESS}]{{1,255}}$"
"""An address: no spaces or controls, spelled out rather than `\\s`, whose meaning
differs between the regex engines that read the OpenAPI (JSON Schema's), pydantic
(Rust's) and Python's `re` (the fuzzer's)."""
Labels = Annotated[
    dict[
        Annotated[str, Field(pattern=LABEL_KEY)],
        Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f]*$")],
    ],
    Field(
        max_length=16,
        description="up to 16 labels: key (letters, digits, _ . -) → value",
        json_schema_extra={"additionalProperties": False},
    ),
]


class NotifyRequest(BaseModel):
    """Where to deliver this one export's outcome, besides the owner's webhooks."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")] | None = None
    email: Annotated[
        list[Annotated[str, Field(max_length=320, pattern=EMAIL)]], Field(max_length=10)
    ] = Field(default_factory=list)


class ExportRequest(BaseModel):
    """One export to queue. Text anywhere in it (params and options included) holds no NUL
    and no unpaired surrogate; numbers fit what both job stores hold."""

    model_config = ConfigDict(extra="forbid")

    exporter: Annotated[Text, Field(min_length=1, max_length=200)]
    params: JsonObject = Field(
        default_factory=dict, description="checked against the exporter's params schema"
    )
    format: Annotated[Text, Field(min_length=1, max_length=40)] = "csv"
    compression: Annotated[Text, Field(min_length=1, max_length=20)] = "none"
    options: JsonObject = Field(
        default_factory=dict,
        description="writer options: formats (a zip bundle), max_rows_per_file, max_bytes_per_file,"
        " csv_formula_escape (default true)",
    )
    priority: Annotated[int, Field(ge=-100, le=100), JSON_NUMBER] = Field(
        default=0, description="higher runs first"
    )
    max_attempts: Annotated[int, Field(ge=1, le=100), JSON_NUMBER] | None = None
    max_runtime_seconds: (
        Annotated[float, Field(gt=0, le=MAX_RUNTIME_SECONDS, allow_inf_nan=False), JSON_NUMBER]
        | None
    ) = None
    filename: Filename | None = None
    ttl_seconds: Annotated[int, Field(ge=60, le=INT32_MAX), JSON_NUMBER] | None = Field(
        default=None,
        description="seconds the files are kept after completion (at most the server's "
        "max_ttl_seconds)",
    )
    labels: Labels = Field(default_factory=dict)
    notify: NotifyRequest | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exports: list[ExportRequest] = Field(min_length=1)


class ProgressOut(BaseModel):
    done: int
    total: int | None
    unit: str
    percent: float | None
    message: str | None
    rate: float | None = Field(description="units per second over the current attempt")
    eta_seconds: float | None


class ErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool


class ArtifactOut(BaseModel):
    name: str
    size: int
    sha256: str
    content_type: str
    rows: int | None
    downloads: int


class JobOut(BaseModel):
    id: str
    owner: str
    exporter: str
    params: dict[str, Any]
    format: str
    compression: str
    options: dict[str, Any]
    status: Status
    priority: int
    attempt: int
    max_attempts: int
    cancel_requested: bool
    progress: ProgressOut
    error: ErrorOut | None
    artifacts: list[ArtifactOut]
    filename: str | None
    batch_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    next_attempt_at: datetime | None
    expires_at: datetime | None
    labels: dict[str, str]
    notify: dict[str, Any] | None
    manual_retries: int
    created_by: str | None
    links: dict[str, str]


class UsageOut(BaseModel):
    owner: str
    bytes_stored: int = Field(description="bytes of the owner's files, until they expire")
    artifacts: int = Field(description="files stored")
    quota_bytes: int | None = Field(description="the owner's storage quota")
    quota_is_default: bool = Field(description="false when an admin set this owner's quota")
    downloads: int = Field(description="downloads counted (presigned links: when issued)")
    jobs: dict[str, int] = Field(description="the owner's jobs by status")


QuotaBytes = Annotated[int, Field(ge=0, le=MAX_QUOTA_BYTES), JSON_NUMBER]


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    storage_quota_bytes: Annotated[int, Field(ge=0, le=MAX_QUOTA_BYTES), JSON_NUMBER] | None = (
        Field(description="bytes; null gives the owner the server's default again")
    )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class BatchOut(BaseModel):
    id: str
    size: int
    created_at: datetime
    counts: dict[str, int]
    progress: dict[str, Any]
    job_ids: list[str]
    done: bool


class ExporterOut(BaseModel):
    name: str
    description: str
    formats: list[str]
    params_schema: dict[str, Any]


def _progress(job: Job) -> ProgressOut:
    p = job.progress
    rate = eta = None
    if job.started_at is not None and job.status in (Status.RUNNING, Status.COMPLETED):
        end = job.finished_at if job.status == Status.COMPLETED and job.finished_at else utcnow()
        elapsed = (end - job.started_at).total_seconds()
        if elapsed > 0 and p.done > 0:
            rate = round(p.done / elapsed, 2)
            if p.total is not None and job.status == Status.RUNNING:
                eta = round(max(p.total - p.done, 0) / rate, 1)
    return ProgressOut(
        done=p.done,
        total=p.total,
        unit=p.unit,
        percent=100.0 if job.status == Status.COMPLETED else p.percent,
        message=p.message,
        rate=rate,
        eta_seconds=eta,
    )


def job_out(job: Job) -> JobOut:
    base = f"/v1/exports/{job.id}"
    links = {"self": base, "events": f"{base}/events"}
    if job.status == Status.COMPLETED:
        links["download"] = f"{base}/download"
    expires = job.expires_at
    return JobOut(
        id=job.id,
        owner=job.owner,
        exporter=job.exporter,
        params=job.params,
        format=job.format,
        compression=job.compression,
        options=job.options,
        status=job.status,
        priority=job.priority,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        progress=_progress(job),
        error=ErrorOut(**job.error.__dict__) if job.error else None,
        artifacts=[
            ArtifactOut(
                name=a.name,
                size=a.size,
                sha256=a.sha256,
                content_type=a.content_type,
                rows=a.rows,
                downloads=a.downloads,
            )
            for a in job.artifacts
        ],
        filename=job.filename,
        batch_id=job.batch_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        next_attempt_at=job.run_after if job.status == Status.QUEUED else None,
        expires_at=expires,
        labels=job.labels,
        notify=job.notify,
        manual_retries=job.manual_retries,
        created_by=job.created_by,
        links=links,
    )


StatusFilter = Literal["queued", "running", "completed", "failed", "cancelled"]


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then the field")
    msg: str = Field(description="why the value was refused")
    type: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details, the body of every error (`application/problem+json`).
    Some problems add members of their own (`errors`, `index`, `names`, `job_id`, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str = Field(description="stable, machine-readable")
    detail: str
    instance: str
    errors: list[FieldError] | None = Field(
        default=None, description="each refused field and why (validation problems)"
    )
