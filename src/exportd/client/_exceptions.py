"""Everything the client raises, under `exportd.errors.ExportdError`.

ExportdError                      (exportd.errors)
└── ClientError                   raised by `Client` and `AsyncClient`, never a raw httpx error
    ├── TransportError            the server could not be reached or the connection broke
    │                             (`url`, and `reason` in words: "connection refused")
    ├── ApiError                  the server answered with a problem (status, code, detail,
    │                             `field_errors`, and the `method` and `url` it answered)
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
    error. `url` is where it was sent, `reason` says what happened in words; the httpx
    error is the `__cause__`."""

    def __init__(self, message: str, *, url: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason or message


LOCATION_SOURCES = ("body", "query", "path", "header", "cookie")


class ApiError(ClientError):
    """The server answered with an `application/problem+json` error. Its text gives each
    invalid field's reason (from the problem's `errors`) and, for a 404, the URL that
    answered."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        problem: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.problem: dict[str, Any] = problem or {}
        self.method = method
        self.url = url
        answered = f" ({method} {url})" if status == 404 and url else ""
        super().__init__(f"{status} {code}: {self.reason}{answered}")

    @property
    def field_errors(self) -> list[tuple[str, str]]:
        """`(field, reason)` for each entry of the problem's `errors`, the field dotted
        without where it came from: `("params.rows", "Input should be ...")`."""
        found = self.problem.get("errors")
        pairs: list[tuple[str, str]] = []
        for error in found if isinstance(found, list) else []:
            if isinstance(error, dict):
                loc = [str(part) for part in error.get("loc") or ()]
                if len(loc) > 1 and loc[0] in LOCATION_SOURCES:
                    loc = loc[1:]
                pairs.append((".".join(loc) or "request", str(error.get("msg") or "invalid")))
        return pairs

    @property
    def reason(self) -> str:
        """The detail, with each field's reason when the detail does not say it already."""
        reasons = [f"{field}: {msg}" for field, msg in self.field_errors]
        if all(reason in self.detail for reason in reasons):
            return self.detail
        summary = self.detail.partition(":")[0].strip() or self.code
        return f"{summary}: {'; '.join(reasons)}"


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
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, detail, problem, method=method, url=url)
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
