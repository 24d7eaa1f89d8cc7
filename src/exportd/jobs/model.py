"""What a job is, as the rest of the code sees it (no I/O)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exportd.jobs.states import Status

_id_lock = threading.Lock()
_last_id = 0


def new_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of milliseconds, 12 bits of sub-millisecond time,
    then 62 random bits. Ids made by one process are strictly increasing, even within a
    millisecond, so "newest first" by id is exact for them."""
    global _last_id
    now = time.time_ns()
    ms, sub = divmod(now, 1_000_000)
    candidate = (
        (ms << 80)
        | (0x7 << 76)
        | ((sub * 4096 // 1_000_000) << 64)
        | (0b10 << 62)
        | int.from_bytes(os.urandom(8)) >> 2
    )
    with _id_lock:
        if candidate <= _last_id:
            candidate = _next_after(_last_id)
        _last_id = candidate
    return str(uuid.UUID(int=candidate))


def _next_after(value: int) -> int:
    """The smallest valid UUIDv7 above `value`: one more in the random bits, or, when
    they are all ones, one more in the 60 time bits with the random bits cleared."""
    random_bits = value & ((1 << 62) - 1)
    if random_bits < (1 << 62) - 1:
        return value + 1
    time_bits = ((value >> 80) << 12 | (value >> 64) & 0xFFF) + 1
    return (time_bits >> 12) << 80 | 0x7 << 76 | (time_bits & 0xFFF) << 64 | 0b10 << 62


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Progress:
    done: int = 0
    total: int | None = None
    unit: str = "rows"
    message: str | None = None

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return round(min(100.0, 100.0 * self.done / self.total), 2)


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class Artifact:
    job_id: str
    name: str
    storage_key: str
    size: int
    sha256: str
    content_type: str
    rows: int | None = None
    downloads: int = 0
    created_at: datetime | None = None


@dataclass(frozen=True)
class NewJob:
    """A request for an export, already validated, before it is stored."""

    owner: str
    exporter: str
    params: dict[str, Any]
    format: str = "csv"
    compression: str = "none"
    priority: int = 0
    max_attempts: int = 3
    max_runtime_seconds: float = 6 * 3600
    filename: str | None = None
    batch_id: str | None = None
    ttl_seconds: int | None = None
    run_after: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Writer options: `formats` (a bundle), `max_rows_per_file`, `max_bytes_per_file`."""
    labels: dict[str, str] = field(default_factory=dict)
    notify: dict[str, Any] | None = None
    """One-off delivery of the outcome: `{"webhook_url": ..., "email": [...]}`."""
    created_by: str | None = None
    """The actor who asked for it (a token's `owner/name`)."""
    id: str = field(default_factory=new_id)


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    exporter: str
    params: dict[str, Any]
    format: str
    compression: str
    status: Status
    priority: int
    attempt: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    progress: Progress
    error: JobError | None
    max_runtime_seconds: float
    filename: str | None
    batch_id: str | None
    ttl_seconds: int | None
    options: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    claim_id: str | None = None
    """The current or last claim (see `Claim.token`)."""
    expires_at: datetime | None = None
    """When a completed export's files expire (set at completion)."""
    labels: dict[str, str] = field(default_factory=dict)
    notify: dict[str, Any] | None = None
    manual_retries: int = 0
    created_by: str | None = None
    artifacts: tuple[Artifact, ...] = ()


def new_claim_id() -> str:
    """A claim id: 32 hex digits, time-ordered and never the same twice."""
    return new_id().replace("-", "")


@dataclass(frozen=True)
class Claim:
    """A running attempt, as handed to the worker that claimed it. `token` is the claim
    id, unique to this claim: `(job.id, job.attempt, token)` fences every write the worker
    makes, and the attempt's storage keys live under it."""

    job: Job
    token: str

    @property
    def fence(self) -> tuple[str, int, str]:
        return (self.job.id, self.job.attempt, self.token)


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    owner: str
    type: str
    data: dict[str, Any]
    created_at: datetime
    actor: str | None = None
