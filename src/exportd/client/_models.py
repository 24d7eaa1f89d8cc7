"""What the client returns: frozen dataclasses parsed from the API's JSON.

Unknown fields are ignored, so a newer server does not break an older client; each object
keeps the JSON it came from in `raw` (for `--json` output and fields not modelled here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "TERMINAL_STATUSES",
    "Artifact",
    "Batch",
    "DownloadResult",
    "ErrorInfo",
    "Event",
    "ExportRequest",
    "ExporterInfo",
    "HistoryEntry",
    "HistoryPage",
    "Job",
    "JobPage",
    "Link",
    "Progress",
]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Progress:
    done: int = 0
    total: int | None = None
    unit: str = "rows"
    percent: float | None = None
    message: str | None = None
    rate: float | None = None
    """Units per second over the current attempt."""
    eta_seconds: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        total = data.get("total")
        return cls(
            done=int(data.get("done") or 0),
            total=int(total) if total is not None else None,
            unit=str(data.get("unit") or "rows"),
            percent=_float(data.get("percent")),
            message=data.get("message"),
            rate=_float(data.get("rate")),
            eta_seconds=_float(data.get("eta_seconds")),
        )


@dataclass(frozen=True)
class ErrorInfo:
    """The error stored on a job: a stable `code`, a human `message`, and whether the
    server will retry it."""

    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorInfo:
        return cls(str(data["code"]), str(data.get("message", "")), bool(data.get("retryable")))


@dataclass(frozen=True)
class Artifact:
    name: str
    size: int
    sha256: str
    content_type: str = "application/octet-stream"
    rows: int | None = None
    downloads: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(
            name=str(data["name"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            content_type=str(data.get("content_type") or "application/octet-stream"),
            rows=data.get("rows"),
            downloads=int(data.get("downloads") or 0),
        )


@dataclass(frozen=True)
class Link:
    """A link to one file of a finished export: anyone holding `url` can GET it (with
    `Range`) without a token until `expires_at`."""

    url: str
    expires_at: datetime
    sha256: str
    size: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Link:
        expires_at = _time(data.get("expires_at"))
        if expires_at is None:
            raise ValueError("a link without expires_at")
        return cls(
            url=str(data["url"]),
            expires_at=expires_at,
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Job:
    """A snapshot of an export job."""

    id: str
    status: str
    exporter: str
    progress: Progress
    attempt: int = 0
    max_attempts: int = 1
    error: ErrorInfo | None = None
    artifacts: tuple[Artifact, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    format: str = "csv"
    compression: str = "none"
    owner: str | None = None
    priority: int = 0
    cancel_requested: bool = False
    filename: str | None = None
    batch_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    expires_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            exporter=str(data.get("exporter", "")),
            progress=Progress.from_dict(data.get("progress") or {}),
            attempt=int(data.get("attempt") or 0),
            max_attempts=int(data.get("max_attempts") or 1),
            error=ErrorInfo.from_dict(error) if error else None,
            artifacts=tuple(Artifact.from_dict(a) for a in data.get("artifacts") or ()),
            params=dict(data.get("params") or {}),
            format=str(data.get("format", "csv")),
            compression=str(data.get("compression", "none")),
            owner=data.get("owner"),
            priority=int(data.get("priority") or 0),
            cancel_requested=bool(data.get("cancel_requested")),
            filename=data.get("filename"),
            batch_id=data.get("batch_id"),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            updated_at=_time(data.get("updated_at")),
            next_attempt_at=_time(data.get("next_attempt_at")),
            expires_at=_time(data.get("expires_at")),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            links=dict(data.get("links") or {}),
            raw=dict(data),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of `Client.list`; pass `next_cursor` as `cursor` for the next (None: last)."""

    items: tuple[Job, ...]
    next_cursor: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobPage:
        return cls(tuple(Job.from_dict(j) for j in data["items"]), data.get("next_cursor"))


@dataclass(frozen=True)
class Batch:
    id: str
    size: int
    job_ids: tuple[str, ...]
    counts: dict[str, int]
    progress: dict[str, Any]
    done: bool
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        return cls(
            id=str(data["id"]),
            size=int(data["size"]),
            job_ids=tuple(data.get("job_ids") or ()),
            counts=dict(data.get("counts") or {}),
            progress=dict(data.get("progress") or {}),
            done=bool(data.get("done")),
            created_at=_time(data.get("created_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ExporterInfo:
    name: str
    description: str
    formats: tuple[str, ...]
    params_schema: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExporterInfo:
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            formats=tuple(data.get("formats") or ()),
            params_schema=dict(data.get("params_schema") or {}),
        )


@dataclass(frozen=True)
class ExportRequest:
    """One export of `Client.batch` (mappings with the same keys are accepted too)."""

    exporter: str
    params: dict[str, Any] = field(default_factory=dict)
    format: str = "csv"
    compression: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int | None = None
    filename: str | None = None
    ttl_seconds: int | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "exporter": self.exporter,
            "params": self.params,
            "format": self.format,
            "compression": self.compression,
            "options": self.options,
            "priority": self.priority,
        }
        optional = {
            "max_attempts": self.max_attempts,
            "filename": self.filename,
            "ttl_seconds": self.ttl_seconds,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.labels:
            body["labels"] = dict(self.labels)
        return body


@dataclass(frozen=True)
class Event:
    """One server-sent event of a job's stream: `id` grows monotonically; `data` is the
    decoded JSON (`type`, `status`, `done`, `total`...)."""

    id: int
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class HistoryEntry:
    """One event of a job's history: what happened, when, and who caused it (a token's
    `owner/name`, or `worker` for the worker's own steps)."""

    id: int
    type: str
    at: datetime | None
    status: str | None
    actor: str
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            id=int(data["id"]),
            type=str(data["type"]),
            at=_time(data.get("at")),
            status=data.get("status"),
            actor=str(data.get("actor") or "worker"),
            data=dict(data.get("data") or {}),
        )


@dataclass(frozen=True)
class HistoryPage:
    """One page of `Client.history`; pass `next_cursor` as `after` for the next (None:
    last)."""

    items: tuple[HistoryEntry, ...]
    next_cursor: int | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryPage:
        cursor = data.get("next_cursor")
        items = tuple(HistoryEntry.from_dict(e) for e in data["items"])
        return cls(items, int(cursor) if cursor is not None else None)


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    artifact: Artifact
