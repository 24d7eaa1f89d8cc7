"""Turning database rows into domain objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exportd.jobs import Artifact, Event, Job, JobError, Progress, Status


def job_from_row(row: Any, artifacts: tuple[Artifact, ...] = ()) -> Job:
    return job_from_mapping(row._mapping, artifacts)


def job_from_mapping(m: Mapping[str, Any], artifacts: tuple[Artifact, ...] = ()) -> Job:
    error = None
    if m["error_code"] is not None:
        error = JobError(m["error_code"], m["error_message"] or "", bool(m["error_retryable"]))
    return Job(
        id=m["id"],
        owner=m["owner"],
        exporter=m["exporter"],
        params=m["params"],
        format=m["format"],
        compression=m["compression"],
        status=Status(m["status"]),
        priority=m["priority"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        run_after=m["run_after"],
        lease_owner=m["lease_owner"],
        lease_expires_at=m["lease_expires_at"],
        cancel_requested=bool(m["cancel_requested"]),
        progress=Progress(
            done=m["progress_done"],
            total=m["progress_total"],
            unit=m["progress_unit"],
            message=m["progress_message"],
        ),
        error=error,
        max_runtime_seconds=m["max_runtime_seconds"],
        filename=m["filename"],
        batch_id=m["batch_id"],
        ttl_seconds=m["ttl_seconds"],
        options=m["options"] or {},
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        updated_at=m["updated_at"],
        claim_id=m["claim_id"],
        expires_at=m["expires_at"],
        labels=m["labels"] or {},
        notify=m["notify"],
        manual_retries=m["manual_retries"],
        created_by=m["created_by"],
        artifacts=artifacts,
    )


def artifact_from_row(row: Any) -> Artifact:
    m = row._mapping
    return Artifact(
        job_id=m["job_id"],
        name=m["name"],
        storage_key=m["storage_key"],
        size=m["size"],
        sha256=m["sha256"],
        content_type=m["content_type"],
        rows=m["rows"],
        downloads=m["downloads"],
        created_at=m["created_at"],
    )


def event_from_row(row: Any) -> Event:
    m = row._mapping
    return Event(
        id=m["id"],
        job_id=m["job_id"],
        owner=m["owner"],
        type=m["type"],
        data=m["data"],
        created_at=m["created_at"],
        actor=m["actor"],
    )


def completed_data(
    attempt: int, progress: Progress, produced: Sequence[Artifact]
) -> dict[str, Any]:
    """The data of a `completed` event."""
    return {
        "status": Status.COMPLETED,
        "attempt": attempt,
        "progress": progress_data(progress),
        "artifacts": [{"name": a.name, "size": a.size, "sha256": a.sha256} for a in produced],
    }


def progress_data(progress: Progress) -> dict[str, Any]:
    return {
        "done": progress.done,
        "total": progress.total,
        "unit": progress.unit,
        "message": progress.message,
    }
