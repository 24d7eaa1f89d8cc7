"""The `ArtifactStorage` contract (storage/base.py), run on every storage: `LocalStorage`
on a real folder and `S3Storage` on a real SeaweedFS over HTTP. Files larger than one
multipart part (5 MiB here) take the S3 multipart path; smaller ones the single put."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from exportd.config import MIN_PART_SIZE
from exportd.errors import ArtifactNotFound, StorageError
from exportd.jobs import utcnow
from exportd.storage import (
    ArtifactStorage,
    LocalStorage,
    Partial,
    S3Options,
    S3Storage,
    claim_prefix,
)
from exportd.storage.s3_partial import S3Partial
from support.seaweed import ADMIN, SeaweedFS

PART = MIN_PART_SIZE
BIG = 2 * PART + 12_345
"""Three parts on S3: two full ones and a short last one."""


def payload(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB, not all one byte
    return (block * (size // len(block) + 1))[:size]


def s3_storage(seaweed: SeaweedFS, url: str) -> S3Storage:
    options = S3Options(
        endpoint_url=seaweed.endpoint,
        access_key_id=ADMIN.access_key,
        secret_access_key=ADMIN.secret_key,
        part_size=PART,
    )
    return S3Storage.open(url, options)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "artifacts")
    seaweed: SeaweedFS = request.getfixturevalue("seaweed")
    url: str = request.getfixturevalue("s3_url")
    return s3_storage(seaweed, url)


def key(claim: str = "c1", name: str = "f.csv", owner: str = "ann", job: str = "j1") -> str:
    return f"{claim_prefix(owner, job, claim)}/{name}"


def write(storage: ArtifactStorage, k: str, data: bytes, *, chunk: int = 1 << 20) -> Partial:
    """An open partial of `k` holding `data` (written in `chunk`-sized writes)."""
    partial = storage.open_partial(k, tag=k.split("/")[2])
    for start in range(0, len(data), chunk):
        partial.write(data[start : start + chunk])
    return partial


def put(storage: ArtifactStorage, k: str, data: bytes) -> None:
    write(storage, k, data).publish()


def read(storage: ArtifactStorage, k: str, offset: int = 0) -> bytes:
    with storage.open_read(k, offset=offset) as handle:
        out: bytes = handle.read()
    return out


def tags(storage: ArtifactStorage) -> list[str]:
    return sorted(p.tag for p in storage.partials())


def sabotage(storage: ArtifactStorage, partial: Partial) -> None:
    """Take the partial's stored bytes away behind its back: publishing must fail."""
    if isinstance(storage, LocalStorage):
        os.unlink(partial._path)  # type: ignore[attr-defined]
    else:
        assert isinstance(storage, S3Storage) and isinstance(partial, S3Partial)
        assert partial.upload_id is not None
        storage.client.abort_multipart_upload(
            Bucket=storage.location.bucket,
            Key=storage.location.object_name(partial.key),
            UploadId=partial.upload_id,
        )


def finish(partial: Partial) -> None:
    """One more part, then publish: on S3 that part has no upload to go to, locally there
    is no file to rename."""
    partial.write(payload(PART))
    partial.publish()


@pytest.mark.parametrize("size", [0, 10, BIG], ids=["empty", "small", "multipart"])
def test_what_is_published_reads_back_whole(storage: ArtifactStorage, size: int) -> None:
    """A published file reads back byte for byte, with its size, from any offset."""
    data = payload(size)
    put(storage, key(), data)
    assert read(storage, key()) == data
    assert storage.size(key()) == size
    for offset in (1, size // 2, size - 1, size, size + 10):
        if offset >= 0:
            assert read(storage, key(), offset) == data[offset:], offset


def test_a_partial_is_never_visible(storage: ArtifactStorage) -> None:
    """Before `publish`, a partial (even one with parts stored) is not readable, has no
    size and is not listed; after it, the file is all there at once."""
    partial = write(storage, key(), payload(BIG))
    assert list(storage.keys()) == []
    with pytest.raises(ArtifactNotFound):
        storage.open_read(key())
    with pytest.raises(ArtifactNotFound):
        storage.size(key())
    partial.publish()
    assert list(storage.keys()) == [key()]
    assert storage.size(key()) == BIG


def test_missing_keys_are_not_found_and_deleting_them_is_fine(storage: ArtifactStorage) -> None:
    """A key never published is `ArtifactNotFound` to read or size; deleting it is a
    no-op, as is deleting a prefix with nothing under it."""
    with pytest.raises(ArtifactNotFound):
        storage.open_read(key(name="nothing"))
    with pytest.raises(ArtifactNotFound):
        storage.size(key(name="nothing"))
    storage.delete(key(name="nothing"))
    assert storage.delete_prefix(claim_prefix("ann", "j1", "c9")) == 0


def test_files_and_keys_list_published_files_under_a_prefix(storage: ArtifactStorage) -> None:
    """`files` lists each published file once with its size and a recent time, only
    under the prefix asked for, never a partial."""
    started = utcnow() - timedelta(minutes=5)
    put(storage, key("c1", "a.csv"), b"aaa")
    put(storage, key("c1", "b.csv"), b"bbbbb")
    put(storage, key("c2", "a.csv", owner="bo"), b"c")
    open_one = write(storage, key("c3", "x.csv"), payload(BIG))
    listed = {f.key: f for f in storage.files()}
    assert {k: f.size for k, f in listed.items()} == {
        key("c1", "a.csv"): 3,
        key("c1", "b.csv"): 5,
        key("c2", "a.csv", owner="bo"): 1,
    }
    assert all(f.modified_at > started for f in listed.values())
    assert sorted(storage.keys("ann/")) == [key("c1", "a.csv"), key("c1", "b.csv")]
    assert list(storage.keys("bo/j1/c2/")) == [key("c2", "a.csv", owner="bo")]
    assert list(storage.keys("nobody/")) == []
    open_one.discard()


def test_delete_and_delete_prefix_remove_only_their_files(storage: ArtifactStorage) -> None:
    """`delete` removes one file; `delete_prefix` every file under `prefix/` (counted),
    not a file whose key merely starts with the same letters."""
    for name in ("a", "b", "c"):
        put(storage, key("c1", name), name.encode())
    put(storage, key("c10", "other"), b"x")
    storage.delete(key("c1", "a"))
    assert sorted(storage.keys()) == [key("c1", "b"), key("c1", "c"), key("c10", "other")]
    assert storage.delete_prefix(claim_prefix("ann", "j1", "c1")) == 2
    assert list(storage.keys()) == [key("c10", "other")]


def test_partials_list_what_is_stored_and_go_when_ended(storage: ArtifactStorage) -> None:
    """An unfinished partial holding a part's worth of bytes is listed with its tag and a
    recent time until it is published or discarded."""
    before = utcnow() - timedelta(minutes=5)
    first = write(storage, key("c1"), payload(PART + 1))
    second = write(storage, key("c2"), payload(PART + 1))
    assert tags(storage) == ["c1", "c2"]
    assert all(p.modified_at > before for p in storage.partials())
    first.publish()
    assert tags(storage) == ["c2"]
    second.discard()
    assert tags(storage) == []
    assert list(storage.keys()) == [key("c1")]


def test_discard_partials_removes_one_tags_partials(storage: ArtifactStorage) -> None:
    """`discard_partials(tag)` removes that attempt's partials (and says how many), and
    leaves other attempts' partials alone."""
    dead = [write(storage, key("dead", name), payload(PART + 1)) for name in "ab"]
    alive = write(storage, key("alive", "a"), payload(PART + 1))
    assert storage.discard_partials("dead") == 2
    assert tags(storage) == ["alive"]
    assert storage.discard_partials("dead") == 0
    alive.publish()
    assert list(storage.keys()) == [key("alive", "a")]
    for partial in dead:  # their writer (a zombie) ending them later changes nothing
        partial.discard()
    assert list(storage.keys()) == [key("alive", "a")]


def test_discard_partial_removes_exactly_the_listed_one(storage: ArtifactStorage) -> None:
    """A listed partial can be removed by itself, and removing it again is not an error."""
    first = write(storage, key("c1", "a"), payload(PART + 1))
    second = write(storage, key("c2", "b"), payload(PART + 1))
    (listed,) = [p for p in storage.partials() if p.tag == "c1"]
    storage.discard_partial(listed)
    storage.discard_partial(listed)
    assert tags(storage) == ["c2"]
    first.discard()
    second.discard()


def test_discard_never_raises_and_leaves_nothing(storage: ArtifactStorage) -> None:
    """Discarding works after a failed publish, twice, and after a publish (where it
    keeps the file); late writes to a discarded partial are dropped."""
    broken = write(storage, key("c1", "broken"), payload(BIG))
    sabotage(storage, broken)
    with pytest.raises(StorageError):
        finish(broken)
    broken.discard()
    broken.discard()
    assert broken.write(b"late") == 4
    kept = write(storage, key("c1", "kept"), b"k")
    kept.publish()
    kept.discard()
    assert list(storage.keys()) == [key("c1", "kept")]
    assert tags(storage) == []


def test_one_attempts_partials_may_be_written_interleaved(storage: ArtifactStorage) -> None:
    """An attempt writing several files at once (parts, a manifest) gets each file's own
    bytes, whatever the order of its writes."""
    a, b = payload(PART + 777, seed=1), payload(PART // 2 + 5, seed=2)
    first = write(storage, key("c1", "a"), a[:1000])
    second = write(storage, key("c1", "b"), b[:10])
    first.write(a[1000:])
    second.write(b[10:])
    third = write(storage, key("c1", "m"), b"manifest")
    second.publish()
    first.publish()
    third.publish()
    assert (read(storage, key("c1", "a")), read(storage, key("c1", "b"))) == (a, b)
    assert read(storage, key("c1", "m")) == b"manifest"


def test_two_claims_never_share_a_key(storage: ArtifactStorage) -> None:
    """Two attempts of one job publish under their own claims: both files exist and
    neither replaced the other; removing one attempt's files leaves the other's."""
    put(storage, key("claim-a"), b"first attempt")
    put(storage, key("claim-b"), b"second attempt")
    assert read(storage, key("claim-a")) == b"first attempt"
    assert read(storage, key("claim-b")) == b"second attempt"
    assert storage.delete_prefix(claim_prefix("ann", "j1", "claim-a")) == 1
    assert list(storage.keys()) == [key("claim-b")]


def test_invalid_keys_are_refused(storage: ArtifactStorage) -> None:
    """Keys that would escape the storage's root are a `StorageError`."""
    for bad in ("", "/abs/x/y/z", "a/../b/c", "a//b/c"):
        with pytest.raises(StorageError):
            storage.open_partial(bad, tag="c1")
        with pytest.raises(StorageError):
            storage.open_read(bad)


@pytest.fixture
def many(storage: ArtifactStorage) -> Iterator[Callable[[int], None]]:
    def make(count: int) -> None:
        for index in range(count):
            put(storage, key("c1", f"f{index:04d}"), b"x")

    yield make
    with contextlib.suppress(StorageError):
        storage.delete_prefix(claim_prefix("ann", "j1", "c1"))


def test_listing_and_deleting_go_past_one_page(
    storage: ArtifactStorage, many: Callable[[int], None]
) -> None:
    """More files than one listing page (1,000 on S3) are all listed and all deleted."""
    many(1005)
    assert len(list(storage.keys())) == 1005
    assert storage.delete_prefix(claim_prefix("ann", "j1", "c1")) == 1005
    assert list(storage.keys()) == []
