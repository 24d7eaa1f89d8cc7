"""Backoff bounds and error classification."""

from __future__ import annotations

import random

import pydantic
import pytest

from exportd.errors import (
    ArtifactExists,
    ExportCancelled,
    PermanentError,
    RetryableError,
    StorageAccessDenied,
    StorageBucketMissing,
    StorageError,
    StorageUnavailable,
)
from exportd.jobs import RetryPolicy, classify


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20, 100])
def test_backoff_stays_within_full_jitter_bounds(attempt: int) -> None:
    """Every delay lies in [0, min(cap, base * 2**(attempt-1))]."""
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=60)
    ceiling = min(60, 0.5 * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [policy.delay(attempt, rng) for _ in range(2000)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.9  # full jitter spreads over the whole range
    assert min(delays) < ceiling * 0.1


def test_backoff_grows_then_caps() -> None:
    """The ceiling doubles per attempt until the cap."""
    policy = RetryPolicy(base_seconds=1, cap_seconds=10)
    assert [policy.ceiling(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_permanent_and_retryable_errors_keep_their_code() -> None:
    """Our own errors carry their code and retryability onto the job."""
    assert classify(PermanentError("no", code="forbidden")).retryable is False
    assert classify(PermanentError("no", code="forbidden")).code == "forbidden"
    info = classify(RetryableError("later", code="rate_limited"))
    assert (info.code, info.retryable) == ("rate_limited", True)


def test_invalid_params_are_permanent() -> None:
    """A pydantic validation error fails the job at once with `invalid_params`."""

    class Params(pydantic.BaseModel):
        rows: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Params.model_validate({"rows": "many"})
    info = classify(caught.value)
    assert (info.code, info.retryable) == ("invalid_params", False)
    assert "rows" in info.message


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TimeoutError("slow"), "timeout"),
        (ConnectionResetError("reset"), "connection_error"),
        (OSError("disk"), "io_error"),
        (ZeroDivisionError("boom"), "unexpected_error"),
    ],
)
def test_unknown_errors_are_retried(exc: Exception, code: str) -> None:
    """Anything not known to be permanent is retried, under a stable code."""
    info = classify(exc)
    assert (info.code, info.retryable) == (code, True)


def test_cancellation_is_never_retried() -> None:
    """A stop (cancel, timeout) is not retryable."""
    assert classify(ExportCancelled("max_runtime_exceeded")).retryable is False


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (StorageError("?"), "storage_error", True),
        (StorageUnavailable("503 SlowDown"), "storage_unavailable", True),
        (ArtifactExists("412"), "artifact_exists", True),
        (StorageAccessDenied("AccessDenied"), "storage_access_denied", False),
        (StorageBucketMissing("NoSuchBucket"), "storage_bucket_missing", False),
    ],
)
def test_storage_errors_carry_their_code_and_retryability(
    error: StorageError, code: str, retryable: bool
) -> None:
    """A storage that is busy or unreachable is retried; one that refuses for good (access
    denied, bucket missing) fails the job at once, each with its own code."""
    info = classify(error)
    assert (info.code, info.retryable) == (code, retryable)
