"""Retry policy and error classification (no I/O)."""

from __future__ import annotations

import errno
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pydantic

from exportd.errors import ExportCancelled, JobFailure, StorageError, StorageFull

OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base*2**(n-1)))."""

    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    def ceiling(self, attempt: int) -> float:
        exponent = max(attempt - 1, 0)
        if exponent > 60:
            return self.cap_seconds
        return min(self.cap_seconds, self.base_seconds * float(2**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return float((rng or random).uniform(0.0, self.ceiling(attempt)))


@dataclass(frozen=True)
class ErrorInfo:
    """The error stored on a job: a stable code, a human message, and whether it is retried."""

    code: str
    message: str
    retryable: bool


def classify(exc: BaseException) -> ErrorInfo:
    """Map an exception raised during an attempt to the error stored on the job.

    Our own `JobFailure`s say what they are; invalid params are permanent; a full disk
    (wherever in the chain of causes it shows, as libraries wrap it) is `storage_full`;
    other storage errors carry their own code and retryability (an unreachable or
    throttling storage is retried, a refusing one is not); timeouts and I/O errors are
    transient, and so is anything unknown (a retry is the safe guess).
    """
    if isinstance(exc, JobFailure):
        return ErrorInfo(exc.code, exc.message, exc.retryable)
    if _out_of_space(exc):
        return ErrorInfo("storage_full", f"no space left for the export: {_one_line(exc)}", True)
    if isinstance(exc, StorageError):
        return ErrorInfo(exc.code, _one_line(exc), exc.retryable)
    if isinstance(exc, pydantic.ValidationError):
        return ErrorInfo("invalid_params", _one_line(exc), False)
    if isinstance(exc, ExportCancelled):
        return ErrorInfo(exc.reason, f"export stopped: {exc.reason}", False)
    if isinstance(exc, TimeoutError):
        return ErrorInfo("timeout", _one_line(exc) or "operation timed out", True)
    if isinstance(exc, ConnectionError):
        return ErrorInfo("connection_error", _one_line(exc), True)
    if isinstance(exc, OSError):
        return ErrorInfo("io_error", _one_line(exc), True)
    return ErrorInfo("unexpected_error", f"{type(exc).__name__}: {_one_line(exc)}", True)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _out_of_space(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, StorageFull):
            return True
        if isinstance(cause, OSError) and cause.errno in OUT_OF_SPACE:
            return True
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:2000]
