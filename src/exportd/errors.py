"""Every error exportd raises, under one root.

    ExportdError
    ├── ConfigurationError          bad settings or URLs
    ├── StoreError                  the job store failed (driver errors are translated to this)
    │   ├── TransientStoreError     deadlock, serialization failure, lost connection, busy:
    │   │                           worth retrying; never a failure of the export itself
    │   ├── JobNotFound
    │   ├── InvalidTransition       a status change the lifecycle forbids
    │   └── LeaseLost               a worker's fenced write found the job taken from it
    ├── ActiveLimitReached          an owner already has as many active jobs as allowed
    ├── RetryLimitReached           a job was retried by hand as often as allowed
    ├── StorageError                artifact storage failed (driver errors are translated to
    │   │                           this); `code` and `retryable` say what a job makes of it
    │   ├── StorageFull             no space left (ENOSPC, EDQUOT): retried with backoff
    │   ├── StorageUnavailable      throttled, a 5xx, a lost connection: retried with backoff
    │   ├── ArtifactExists          a publish found its key taken (If-None-Match): retried,
    │   │                           under the next attempt's own key
    │   ├── StorageRefused          the storage will keep saying no: fails the job at once
    │   │   ├── StorageAccessDenied         access denied, or credentials it does not know
    │   │   └── StorageBucketMissing        the bucket does not exist
    │   └── ArtifactNotFound
    ├── JobFailure                  raised inside an export to end the attempt
    │   ├── PermanentError          fails the job at once (bad params, not found, forbidden)
    │   │   └── QuotaExceeded       the owner's storage quota is used up
    │   └── RetryableError          retried with backoff until max_attempts
    ├── ExportCancelled             the job was cancelled (or its worker is stopping)
    ├── LinkError                   a signed download link is not valid
    │   ├── LinkTampered
    │   └── LinkExpired
    └── DeliveryError               a webhook or e-mail could not be sent
        └── TargetRefused           a webhook URL that may not be called (scheme, or an
                                    address SSRF protection forbids, or unresolvable)

Each `JobFailure` carries a stable `code` that ends up on the job's stored error.
"""

from __future__ import annotations


class ExportdError(Exception):
    """Root of every exportd error."""


class ConfigurationError(ExportdError):
    pass


class StoreError(ExportdError):
    pass


class TransientStoreError(StoreError):
    """The operation did not happen and may succeed if tried again (or, for a lost
    connection during commit, may have happened: callers that retry check)."""


class JobNotFound(StoreError):
    pass


class InvalidTransition(StoreError):
    pass


class LeaseLost(StoreError):
    """A fenced write by a worker matched no row: the attempt is no longer this worker's."""


class ActiveLimitReached(ExportdError):
    """Creating (or retrying) would give the owner more queued and running jobs than its
    limit; nothing was stored."""

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"{active} jobs are queued or running; the limit is {limit}")
        self.active = active
        self.limit = limit


class RetryLimitReached(ExportdError):
    pass


class StorageError(ExportdError):
    """Artifact storage failed. A job that fails with it stores `code` and is retried
    when `retryable`."""

    code = "storage_error"
    retryable = True


class StorageFull(StorageError):
    code = "storage_full"


class StorageUnavailable(StorageError):
    """The storage did not answer, answered too slowly or asked to slow down, or failed on
    its side (a 5xx): may work if tried again."""

    code = "storage_unavailable"


class ArtifactExists(StorageError):
    """A publish found an object already under its key: it was not overwritten."""

    code = "artifact_exists"


class StorageRefused(StorageError):
    """The storage refuses, and will go on refusing until someone changes its
    configuration: retrying cannot help."""

    code = "storage_refused"
    retryable = False


class StorageAccessDenied(StorageRefused):
    code = "storage_access_denied"


class StorageBucketMissing(StorageRefused):
    code = "storage_bucket_missing"


class ArtifactNotFound(StorageError):
    pass


class JobFailure(ExportdError):
    """Ends an export attempt with a stable error `code`; `retryable` decides what follows."""

    retryable: bool = True
    default_code = "export_failed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message


class PermanentError(JobFailure):
    retryable = False
    default_code = "permanent_error"


class QuotaExceeded(PermanentError):
    default_code = "storage_quota_exceeded"


class RetryableError(JobFailure):
    retryable = True
    default_code = "retryable_error"


class ExportCancelled(ExportdError):
    """Raised at a checkpoint when the job must stop: `reason` is cancelled, shutdown,
    lease_lost or max_runtime_exceeded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LinkError(ExportdError):
    """A signed download link is not valid."""


class LinkTampered(LinkError):
    pass


class LinkExpired(LinkError):
    pass


class DeliveryError(ExportdError):
    """Sending a webhook or an e-mail failed; `code` is stable, `retryable` says whether
    a later attempt may succeed."""

    def __init__(self, code: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class TargetRefused(DeliveryError):
    """A webhook URL exportd will not call: `code` is `invalid_webhook_url`,
    `webhook_url_forbidden` or `webhook_url_unresolvable`."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(code, message, retryable=retryable)
