"""Everything the client raises, under `exportd.errors.ExportdError`.

ExportdError                      (exportd.errors)
└── ClientError                   raised by `Client` and `AsyncClient`, never a raw httpx error
    ├── TransportError            the server could not be reached or the connection broke
    ├── ApiError                  the server answered with a problem (status, code, detail)
    │   ├── InvalidRequest        400, 422: bad params, format, exporter...
    │   ├── Unauthorized          401: missing, unknown or revoked token
    │   ├── Forbidden             403
    │   ├── NotFound              404: no such job (or another owner's)
    │   ├── Conflict              409: idempotency key reused, job in the wrong state
    │   ├── Gone                  410: an expired download link
    │   ├── RateLimited           429: too many active jobs; `retry_after` seconds
    │   └── ServerError           5xx
    ├── JobEnded                  a job the caller waited for did not complete
    │   ├── JobFailed             ... it failed (`job.error` says why)
    │   └── JobCancelled          ... it was cancelled
    ├── WatchError                watching a job gave up
    │   ├── JobStalled            no progress for `stall_timeout` seconds
    │   └── WatchTimeout          the overall `timeout` ran out
    └── DownloadError             a download could not be completed
        └── ChecksumMismatch      the bytes received do not have the announced sha256
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exportd.errors import ExportdError

if TYPE_CHECKING:
    from exportd.client._models import Job

__all__ = [
    "ApiError",
    "ChecksumMismatch",
    "ClientError",
    "Conflict",
    "DownloadError",
    "Forbidden",
    "Gone",
    "InvalidRequest",
    "JobCancelled",
    "JobEnded",
    "JobFailed",
    "JobStalled",
    "NotFound",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "WatchError",
    "WatchTimeout",
]


class ClientError(ExportdError):
    """Root of the errors the Python client raises."""


class TransportError(ClientError):
    """The request did not get an answer: connection refused or broken, timeout, protocol
    error. The httpx error is the `__cause__`."""


class ApiError(ClientError):
    """The server answered with an `application/problem+json` error."""

    def __init__(
        self, status: int, code: str, detail: str, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem: dict[str, Any] = problem or {}


class InvalidRequest(ApiError):
    """400 or 422: the request cannot be done as asked (see `code` and `problem["errors"]`)."""


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    pass


class RateLimited(ApiError):
    """Too many requests or active jobs; try again after `retry_after` seconds (if known)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        problem: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, detail, problem)
        self.retry_after = retry_after


class ServerError(ApiError):
    pass


class JobEnded(ClientError):
    """The job reached a terminal state other than completed; `job` is its last snapshot."""

    def __init__(self, job: Job, message: str) -> None:
        super().__init__(message)
        self.job = job


class JobFailed(JobEnded):
    def __init__(self, job: Job) -> None:
        error = job.error
        reason = f"{error.code}: {error.message}" if error else "unknown error"
        super().__init__(job, f"export {job.id} failed ({reason})")


class JobCancelled(JobEnded):
    def __init__(self, job: Job) -> None:
        super().__init__(job, f"export {job.id} was cancelled")


class WatchError(ClientError):
    """Watching gave up; `job` is the last snapshot seen."""

    def __init__(self, job: Job, seconds: float, message: str) -> None:
        super().__init__(message)
        self.job = job
        self.seconds = seconds


class JobStalled(WatchError):
    def __init__(self, job: Job, seconds: float) -> None:
        super().__init__(
            job, seconds, f"export {job.id} made no progress for {seconds:g}s ({job.status})"
        )


class WatchTimeout(WatchError):
    def __init__(self, job: Job, seconds: float) -> None:
        super().__init__(
            job, seconds, f"export {job.id} did not finish within {seconds:g}s ({job.status})"
        )


class DownloadError(ClientError):
    pass


class ChecksumMismatch(DownloadError):
    """The file was deleted: its sha256 is `actual`, the server announced `expected`."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(f"{path}: sha256 {actual} does not match the expected {expected}")
        self.path = path
        self.expected = expected
        self.actual = actual
