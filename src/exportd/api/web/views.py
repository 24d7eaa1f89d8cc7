"""What the templates show of a job: the API's own view of it (`JobOut`, so the page and
the JSON agree on percent, rate and ETA) plus what the page decides from it — its name,
which buttons apply, whether it waits for a retry — and its timeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exportd.api.schemas import ArtifactOut, JobOut, job_out
from exportd.jobs import Event, Job, Status, utcnow

STATUSES = tuple(str(s) for s in Status)


@dataclass(frozen=True)
class JobView:
    job: JobOut

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def name(self) -> str:
        """The file's name when it is known, else what the export is."""
        if self.job.filename:
            return self.job.filename
        if len(self.job.artifacts) == 1:
            return self.job.artifacts[0].name
        return f"{self.job.exporter} export"

    @property
    def active(self) -> bool:
        return self.job.status in (Status.QUEUED, Status.RUNNING)

    @property
    def can_cancel(self) -> bool:
        return self.active and not self.job.cancel_requested

    @property
    def can_retry(self) -> bool:
        return self.job.status in (Status.FAILED, Status.CANCELLED)

    @property
    def can_delete(self) -> bool:
        return self.job.status != Status.RUNNING

    @property
    def waiting_until(self) -> Any:
        """When the next attempt may start, for a job waiting out a retry backoff."""
        at = self.job.next_attempt_at
        if self.job.status == Status.QUEUED and self.job.attempt > 0 and at and at > utcnow():
            return at
        return None

    @property
    def download(self) -> ArtifactOut | None:
        """The one file the list's Download button gets (as the API's download picks)."""
        if self.job.status != Status.COMPLETED or not self.job.artifacts:
            return None
        if len(self.job.artifacts) == 1:
            return self.job.artifacts[0]
        bundles = [a for a in self.job.artifacts if a.content_type == "application/zip"]
        return bundles[0] if len(bundles) == 1 else None

    @property
    def size(self) -> int | None:
        if self.job.status != Status.COMPLETED or not self.job.artifacts:
            return None
        if self.download is not None:
            return self.download.size
        return sum(a.size for a in self.job.artifacts)


def job_view(job: Job) -> JobView:
    return JobView(job_out(job))


@dataclass
class Moment:
    """One line of a job's timeline: an event, or a run of progress events."""

    type: str
    at: Any
    data: dict[str, Any]
    count: int = 1
    ids: list[int] = field(default_factory=list)


def timeline(events: Sequence[Event]) -> list[Moment]:
    """Events in order, each run of progress events folded into one line (its count and
    last values): a long export writes thousands of them."""
    moments: list[Moment] = []
    for event in events:
        last = moments[-1] if moments else None
        if event.type == "progress" and last is not None and last.type == "progress":
            last.count += 1
            last.at, last.data = event.created_at, event.data
            last.ids.append(event.id)
            continue
        moments.append(Moment(event.type, event.created_at, dict(event.data), ids=[event.id]))
    return moments
