"""What `S3Storage` adds to the contract, on a real SeaweedFS: conditional publishing,
the sha256 on the object, the upload log, bounded memory for an attempt's many files,
the sweeps of uploads, and S3's errors translated into exportd's."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pydantic
import pytest

from exportd.config import MIN_PART_SIZE, Settings
from exportd.errors import (
    ArtifactExists,
    ConfigurationError,
    StorageAccessDenied,
    StorageBucketMissing,
    StorageUnavailable,
)
from exportd.jobs import Claim, ErrorInfo, NewJob, classify
from exportd.storage import Partial, S3Options, S3Storage, claim_prefix, open_storage
from exportd.storage.s3_partial import S3Partial
from exportd.store import SqlJobStore
from exportd.worker.sweeper import Sweeper
from support.proxy import CuttingProxy, Request
from support.seaweed import ADMIN, READER, Identity, SeaweedFS

PART = MIN_PART_SIZE


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These tests' job store is SQLite: the storage is what they test."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def options(endpoint: str, who: Identity = ADMIN) -> S3Options:
    return S3Options(
        endpoint_url=endpoint,
        access_key_id=who.access_key,
        secret_access_key=who.secret_key,
        part_size=PART,
    )


@pytest.fixture
def s3(seaweed: SeaweedFS, s3_url: str) -> S3Storage:
    return S3Storage.open(s3_url, options(seaweed.endpoint))


@pytest.fixture
def claimed(store: SqlJobStore) -> Callable[[], tuple[str, Claim]]:
    """Claim a new job: its key prefix and the claim."""

    def claim() -> tuple[str, Claim]:
        store.enqueue(NewJob(owner="ann", exporter="synthetic", params={"rows": 1}))
        taken = store.claim("w", lease_seconds=60, owner_cap=100)
        assert taken is not None
        return claim_prefix("ann", taken.job.id, taken.token), taken

    return claim


def end(store: SqlJobStore, claim: Claim) -> None:
    """The attempt fails (without discarding anything: as if its process died)."""
    store.fail(claim, ErrorInfo("x", "y", False), retry_at=None)


def finish(partial: Partial, body: bytes) -> None:
    partial.write(body)
    partial.publish()


def data(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def uploads(seaweed: SeaweedFS, storage: S3Storage) -> list[str]:
    return seaweed.incomplete_uploads(storage.location.root)


def test_a_key_cannot_be_published_twice(seaweed: SeaweedFS, s3: S3Storage) -> None:
    """Publishing a key that exists fails with `ArtifactExists` (If-None-Match on the
    multipart completion and on the single put), the first object stays, and the
    refused upload is gone once discarded."""
    key = "ann/j1/c1/f.csv"
    first = s3.open_partial(key, tag="c1")
    first.write(b"first")
    first.publish()
    for size in (10, PART + 10):
        again = s3.open_partial(key, tag="c1")
        again.write(data(size))
        with pytest.raises(ArtifactExists):
            again.publish()
        again.discard()
    with s3.open_read(key) as handle:
        assert handle.read() == b"first"
    assert uploads(seaweed, s3) == []
    assert classify(ArtifactExists("x")).retryable


@pytest.mark.parametrize("size", [100, 2 * PART + 1])
def test_the_object_carries_its_sha256(seaweed: SeaweedFS, s3: S3Storage, size: int) -> None:
    """A single-put object has the sha256 as metadata; a multipart one as a tag set after
    completion. Both match the bytes, as does what the partial reports."""
    key = "ann/j1/c1/f.bin"
    partial = s3.open_partial(key, tag="c1")
    body, chunk = data(size), 1 << 20
    for start in range(0, size, chunk):
        partial.write(body[start : start + chunk])
    partial.publish()
    digest = hashlib.sha256(body).hexdigest()
    assert isinstance(partial, S3Partial)
    assert (partial.sha256, partial.size) == (digest, size)
    client, name = seaweed.client(), s3.location.object_name(key)
    head = client.head_object(Bucket=seaweed.bucket, Key=name)
    assert head["ContentLength"] == size
    if size < PART:
        assert head["Metadata"]["sha256"] == digest
    else:
        tagged = client.get_object_tagging(Bucket=seaweed.bucket, Key=name)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tagged}["sha256"] == digest


def test_uploads_are_recorded_from_creation_to_end(
    seaweed: SeaweedFS, s3: S3Storage, store: SqlJobStore, claimed: Callable[[], tuple[str, Claim]]
) -> None:
    """With the job store attached, an upload is recorded with its id and every committed
    part (number, ETag, size) while it runs, and forgotten once published or discarded."""
    s3.attach(store)
    prefix, claim = claimed()
    partial = s3.open_partial(f"{prefix}/a.csv", tag=claim.token)
    partial.write(data(2 * PART + 5))
    partial.wait_sent()  # the second part has reached S3
    end(store, claim)  # so that the recorded upload is listed
    (recorded,) = store.uploads_of_dead_claims()
    assert (recorded.storage_key, recorded.claim_id) == (f"{prefix}/a.csv", claim.token)
    assert [(n, size) for n, _, size in recorded.parts] == [(1, PART), (2, PART)]
    assert recorded.upload_id == partial.upload_id
    partial.publish()
    assert store.uploads_of_dead_claims() == []
    other = s3.open_partial(f"{prefix}/b.csv", tag=claim.token)
    other.write(data(PART))
    other.discard()
    assert store.uploads_of_dead_claims() == []
    assert uploads(seaweed, s3) == []


def test_an_attempt_holds_one_files_buffer_in_memory(seaweed: SeaweedFS, s3_url: str) -> None:
    """When an attempt opens its next file, the previous one's part buffer leaves memory:
    sent as a part if big enough (a short one: the part size is 10 MiB here), else moved
    to a temporary file. The bytes are kept."""
    s3 = S3Storage.open(s3_url, replace(options(seaweed.endpoint), part_size=2 * PART))
    big, small = data(2 * PART + 100), data(1000)
    first = s3.open_partial("ann/j1/c1/big", tag="c1")
    first.write(big[: PART + 10])
    second = s3.open_partial("ann/j1/c1/small", tag="c1")
    assert isinstance(first, S3Partial) and isinstance(second, S3Partial)
    assert first._buffer.in_memory == 0 and first.upload_id is not None
    second.write(small)
    s3.open_partial("ann/j1/c1/manifest", tag="c1").write(b"{}")
    assert second._buffer.in_memory == 0 and second._buffer.size == 1000
    first.write(big[PART + 10 :])
    for partial in (first, second):
        partial.publish()
    for key, body in (("ann/j1/c1/big", big), ("ann/j1/c1/small", small)):
        with s3.open_read(key) as handle:
            assert handle.read() == body


def test_the_sweeps_abort_uploads_of_dead_attempts_only(
    seaweed: SeaweedFS, s3: S3Storage, store: SqlJobStore, claimed: Callable[[], tuple[str, Claim]]
) -> None:
    """The `uploads` sweep aborts the recorded uploads of attempts no longer running; the
    `partials` sweep those S3 lists that no running claim owns (even unrecorded ones);
    a running attempt's upload survives both."""
    s3.attach(store)
    (dead_prefix, dead), (live_prefix, live) = claimed(), claimed()
    recorded = s3.open_partial(f"{dead_prefix}/a", tag=dead.token)
    recorded.write(data(PART))
    running = s3.open_partial(f"{live_prefix}/a", tag=live.token)
    running.write(data(PART))
    unrecorded = S3Storage(s3.location, s3.options)  # a process whose log write was lost
    lost = unrecorded.open_partial(f"{dead_prefix}/b", tag=dead.token)
    lost.write(data(PART))
    for partial in (recorded, running, lost):
        assert isinstance(partial, S3Partial)
        partial.wait_sent()
    end(store, dead)
    assert len(uploads(seaweed, s3)) == 3
    sweeper = Sweeper(store, s3, holder="t", grace_seconds=0, interval_seconds=300)
    report = sweeper.sweep(force=True)
    assert (report.uploads, report.partials) == (1, 1)
    assert uploads(seaweed, s3) == [s3.location.object_name(f"{live_prefix}/a")]
    assert [u.storage_key for u in store.uploads_of_dead_claims()] == []
    running.publish()
    assert list(s3.keys()) == [f"{live_prefix}/a"]


# -- errors --------------------------------------------------------------------------------


def test_a_missing_bucket_at_start_is_a_configuration_error(seaweed: SeaweedFS) -> None:
    """Opening storage on a bucket that does not exist fails at once, naming the URL."""
    settings = Settings(**seaweed.settings("s3://no-such-bucket/x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"s3://no-such-bucket/x.*does not exist"):
        open_storage(settings.resolved_storage_url(), settings)


def test_unknown_credentials_at_start_are_a_configuration_error(
    seaweed: SeaweedFS, s3_url: str
) -> None:
    """Credentials the server does not know fail at start, naming the URL."""
    stranger = Identity("nobody", "nothing", ())
    with pytest.raises(ConfigurationError, match=r"access to the bucket of .*s3://"):
        S3Storage.open(s3_url, options(seaweed.endpoint, stranger))


def test_access_denied_fails_the_job_at_once(seaweed: SeaweedFS, s3_url: str) -> None:
    """A writer without write permission gets `StorageAccessDenied`, which fails a job
    permanently with code storage_access_denied."""
    storage = S3Storage.open(s3_url, options(seaweed.endpoint, READER))
    for size in (10, PART):
        partial = storage.open_partial("ann/j1/c1/f", tag="c1")
        with pytest.raises(StorageAccessDenied) as caught:
            finish(partial, data(size))
        partial.discard()
    error = classify(caught.value)
    assert (error.code, error.retryable) == ("storage_access_denied", False)


def test_a_bucket_gone_later_fails_the_job_at_once(seaweed: SeaweedFS) -> None:
    """A bucket deleted after start is `StorageBucketMissing`: storage_bucket_missing,
    not retried."""
    client = seaweed.client()
    client.create_bucket(Bucket="short-lived")
    storage = S3Storage.open("s3://short-lived/p", options(seaweed.endpoint))
    client.delete_bucket(Bucket="short-lived")
    partial = storage.open_partial("ann/j1/c1/f", tag="c1")
    partial.write(b"x")
    with pytest.raises(StorageBucketMissing) as caught:
        partial.publish()
    partial.discard()
    error = classify(caught.value)
    assert (error.code, error.retryable) == ("storage_bucket_missing", False)


SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 106\r\n"
    b"Connection: close\r\n\r\n<?xml version='1.0' encoding='UTF-8'?>"
    b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
)


@pytest.fixture
def throttling(seaweed: SeaweedFS) -> Iterator[CuttingProxy]:
    """SeaweedFS behind a proxy that answers 503 SlowDown to every upload creation and
    cuts the connection of every single put."""

    def rule(request: Request) -> bytes | int | None:
        if request.method == "POST" and "uploads" in request.path:
            return SLOW_DOWN
        if request.method == "PUT" and "partNumber" not in request.path:
            return 0
        return None

    with CuttingProxy(seaweed.endpoint, rule) as proxy:
        yield proxy


@pytest.mark.parametrize("size", [10, PART], ids=["cut", "throttled"])
def test_throttling_and_lost_connections_are_retried(
    throttling: CuttingProxy, s3_url: str, size: int
) -> None:
    """A 503 SlowDown (after boto3's own retries) and a connection cut mid-request are
    `StorageUnavailable`: storage_unavailable, retried with backoff."""
    storage = S3Storage.open(s3_url, options(throttling.url))
    partial = storage.open_partial("ann/j1/c1/f", tag="c1")
    with pytest.raises(StorageUnavailable) as caught:
        finish(partial, data(size))
    partial.discard()
    error = classify(caught.value)
    assert (error.code, error.retryable) == ("storage_unavailable", True)
    assert len(throttling.requests) >= 2  # boto3 tried more than once


def test_part_sizes_below_s3s_minimum_are_refused() -> None:
    """EXPORTD_S3_PART_SIZE takes sizes such as 8MiB, and refuses less than 5 MiB."""
    assert Settings(s3_part_size="8MiB").s3_part_size == 8 * 2**20  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="s3_part_size"):
        Settings(s3_part_size="4MiB")  # type: ignore[arg-type]
