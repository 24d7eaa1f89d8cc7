"""exportd: durable background export jobs.

The top-level names are the Python client (`Client`, `AsyncClient`), what it returns, and
every exception it raises (all under `ExportdError`). The server side lives in
`exportd.runtime`, `exportd.api`, `exportd.worker` and friends.
"""

from typing import TYPE_CHECKING, Any

from exportd.errors import ExportdError

if TYPE_CHECKING:
    from exportd.client import (
        TERMINAL_STATUSES,
        ApiError,
        Artifact,
        AsyncClient,
        Batch,
        ChecksumMismatch,
        Client,
        ClientError,
        Conflict,
        DownloadError,
        DownloadResult,
        ErrorInfo,
        Event,
        ExporterInfo,
        ExportRequest,
        Forbidden,
        Gone,
        InvalidRequest,
        Job,
        JobCancelled,
        JobEnded,
        JobFailed,
        JobPage,
        JobStalled,
        Link,
        NotFound,
        PollIntervals,
        Progress,
        RateLimited,
        ServerError,
        TransportError,
        Unauthorized,
        WatchError,
        WatchTimeout,
    )

__version__ = "0.1.0"

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
    "ExportdError",
    "ExporterInfo",
    "Forbidden",
    "Gone",
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
    "ServerError",
    "TransportError",
    "Unauthorized",
    "WatchError",
    "WatchTimeout",
    "__version__",
]

_CLIENT_NAMES = frozenset(__all__) - {"ExportdError", "__version__"}


def __getattr__(name: str) -> Any:
    """The client's names, imported on first use (PEP 562): `exportd worker` and
    `exportd serve` import this package too, and never need httpx."""
    if name not in _CLIENT_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import exportd.client

    value = getattr(exportd.client, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
