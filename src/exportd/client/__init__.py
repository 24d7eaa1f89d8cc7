"""The Python client of the exportd HTTP API: `Client` (blocking) and `AsyncClient`.

with exportd.Client("http://127.0.0.1:8000", token) as client:
    job = client.create("synthetic", {"rows": 100_000}, format="parquet")
    for snapshot in client.watch(job.id, stall_timeout=60):
        print(snapshot.status, snapshot.progress.percent)
    client.download(job.id, "orders.parquet")
"""

from exportd.client._async import AsyncClient
from exportd.client._core import RetryPolicy
from exportd.client._exceptions import (
    ApiError,
    ChecksumMismatch,
    ClientError,
    Conflict,
    DownloadError,
    Forbidden,
    Gone,
    InvalidRequest,
    JobCancelled,
    JobEnded,
    JobFailed,
    JobStalled,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    WatchError,
    WatchTimeout,
)
from exportd.client._models import (
    TERMINAL_STATUSES,
    Artifact,
    Batch,
    DownloadResult,
    ErrorInfo,
    Event,
    ExporterInfo,
    ExportRequest,
    HistoryEntry,
    HistoryPage,
    Job,
    JobPage,
    Link,
    Progress,
)
from exportd.client._sync import Client
from exportd.client._watch import PollIntervals

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "Artifact",
    "AsyncClient",
    "Batch",
    "ChecksumMismatch",
    "Client",
    "ClientError",
    "Conflict",
    "DownloadError",
    "DownloadResult",
    "ErrorInfo",
    "Event",
    "ExportRequest",
    "ExporterInfo",
    "Forbidden",
    "Gone",
    "HistoryEntry",
    "HistoryPage",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobEnded",
    "JobFailed",
    "JobPage",
    "JobStalled",
    "Link",
    "NotFound",
    "PollIntervals",
    "Progress",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "WatchError",
    "WatchTimeout",
]
