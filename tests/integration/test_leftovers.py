"""Nothing is left behind: a rescued attempt's files go with it, the sweep removes what
dead attempts left and keeps what live ones and artifacts need, keys are never shared by
two claims, and a full disk fails attempts with `storage_full`, removes their partials
and does not poison the worker once there is space again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import IN_CI, wait_for, wait_for_status
from exportd.errors import StorageFull
from exportd.jobs import Artifact, NewJob, Status, utcnow
from exportd.runtime import Runtime
from exportd.storage import LocalStorage, claim_prefix
from exportd.store.schema import artifacts
from exportd.worker.sweeper import Sweeper


def local(runtime: Runtime) -> LocalStorage:
    assert isinstance(runtime.storage, LocalStorage)
    return runtime.storage


def partial_names(storage: LocalStorage) -> list[str]:
    return sorted(p.name for p in (storage.root / ".partial").iterdir())


def age(path: Path, seconds: float) -> None:
    when = (utcnow() - timedelta(seconds=seconds)).timestamp()
    os.utime(path, (when, when))


def test_a_rescued_attempt_leaves_no_partial_and_no_published_file(
    make_runtime: Callable[..., Runtime],
) -> None:
    """An attempt that died holding a partial and a file it had published (but not yet
    recorded) leaves neither once its job is rescued."""
    runtime = make_runtime()
    storage = local(runtime)
    runtime.store.enqueue(NewJob(owner="ann", exporter="synthetic", params={"rows": 1}))
    claim = runtime.store.claim("dead", lease_seconds=0.01, owner_cap=3)
    assert claim is not None
    prefix = claim_prefix("ann", claim.job.id, claim.token)
    published = storage.open_partial(f"{prefix}/part-00000.csv", tag=claim.token)
    published.write(b"a\n")
    published.publish()
    unfinished = storage.open_partial(f"{prefix}/part-00001.csv", tag=claim.token)
    unfinished.write(b"b\n")
    unfinished._file.close()  # type: ignore[union-attr]  # the process died here
    worker = runtime.start_worker(concurrency=1)
    wait_for_status(runtime.store, claim.job.id, Status.COMPLETED)
    assert worker.store.stats.snapshot()["rescued"] == 1
    done = runtime.store.get(claim.job.id)
    assert list(storage.keys()) == [done.artifacts[0].storage_key]
    assert claim.token not in done.artifacts[0].storage_key
    assert partial_names(storage) == []


def test_the_sweep_removes_garbage_and_keeps_what_is_alive(
    make_runtime: Callable[..., Runtime],
) -> None:
    """Old partials of attempts no longer running and old unreferenced files go; a live
    attempt's partial and file, young files and files an artifact refers to stay. A dry
    run counts the same and removes nothing."""
    runtime = make_runtime(sweep_grace_seconds=60)
    storage, store = local(runtime), runtime.store
    job = store.enqueue(NewJob(owner="bo", exporter="synthetic", params={"rows": 1}))
    live = store.claim("w", lease_seconds=60, owner_cap=3)
    assert live is not None
    live_prefix = claim_prefix("bo", job.id, live.token)
    files = {
        "dead partial": storage.open_partial("x/y/dead/f.csv", tag="deadclaim"),
        "live partial": storage.open_partial(f"{live_prefix}/f.csv", tag=live.token),
        "young partial": storage.open_partial("x/y/young/f.csv", tag="youngclaim"),
    }
    for partial in files.values():
        partial.write(b"1\n")
        partial._file.close()  # type: ignore[attr-defined]  # as if their writers died
    for name in ("x/y/dead/orphan.csv", f"{live_prefix}/done.csv", "x/y/young/orphan.csv"):
        published = storage.open_partial(name, tag="publisher")
        published.write(b"2\n")
        published.publish()
    kept = store.enqueue(NewJob(owner="bo", exporter="synthetic", params={"rows": 1}))
    referenced = storage.open_partial("x/z/old/kept.csv", tag="publisher")
    referenced.publish()
    art = Artifact(kept.id, "kept.csv", "x/z/old/kept.csv", 0, "0" * 64, "text/csv")
    with store.engine.begin() as conn:
        conn.execute(artifacts.insert().values(**{**art.__dict__, "created_at": utcnow()}))
    for path in (storage.root / ".partial").iterdir():
        if not path.name.startswith("young"):
            age(path, 120)
    for key in ("x/y/dead/orphan.csv", f"{live_prefix}/done.csv", "x/z/old/kept.csv"):
        age(storage.path_of(key), 120)
    sweeper = Sweeper(store, storage, holder="t", grace_seconds=60, interval_seconds=300)
    dry = sweeper.sweep(force=True, dry_run=True)
    assert (dry.partials, dry.orphans) == (1, 1)
    assert len(partial_names(storage)) == 3
    report = sweeper.sweep(force=True)
    assert (report.partials, report.orphans) == (1, 1)
    assert sorted(name.split(".")[0] for name in partial_names(storage)) == sorted(
        [live.token, "youngclaim"]
    )
    assert sorted(storage.keys()) == sorted(
        [f"{live_prefix}/done.csv", "x/y/young/orphan.csv", "x/z/old/kept.csv"]
    )


def test_a_sweep_runs_in_one_process_at_a_time(make_runtime: Callable[..., Runtime]) -> None:
    """While one holder has a sweep's lease, another skips it; once finished, the other
    gets it (when forced) or waits for the interval."""
    runtime = make_runtime()
    store = runtime.store
    assert store.take_sweep("partials", "a", lease_seconds=60, every=0)
    assert not store.take_sweep("partials", "b", lease_seconds=60, every=0)
    store.finish_sweep("partials", "a")
    assert not store.take_sweep("partials", "b", lease_seconds=60, every=300)
    assert store.take_sweep("partials", "b", lease_seconds=60, every=0)


def test_a_released_job_is_claimed_under_new_keys(make_runtime: Callable[..., Runtime]) -> None:
    """A release gives the attempt number back, not the claim: the next claim writes
    under a prefix of its own."""
    store = make_runtime().store
    job = store.enqueue(NewJob(owner="cy", exporter="synthetic", params={"rows": 1}))
    first = store.claim("w", lease_seconds=60, owner_cap=3)
    assert first is not None
    store.release(first)
    second = store.claim("w", lease_seconds=60, owner_cap=3)
    assert second is not None
    assert (first.job.attempt, second.job.attempt) == (1, 1)
    assert first.token != second.token
    assert claim_prefix("cy", job.id, first.token) != claim_prefix("cy", job.id, second.token)


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of the test's own (needs root; in CI, failing to mount fails)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        reason = f"cannot mount a small tmpfs: {made.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Write a filler file until only about `leave` bytes are free."""
    filler = directory / "filler"
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def test_discard_removes_a_partial_whose_flush_fails(small_disk: Path) -> None:
    """On a full disk a buffered write succeeds and the flush fails: discard still removes
    the file, and a write that reaches the disk raises StorageFull."""
    storage = LocalStorage(small_disk / "artifacts")
    fill(small_disk, leave=0)
    partial = storage.open_partial("a/b/c/f.csv", tag="t1")
    partial.write(b"x" * 100)  # buffered: no error yet
    partial.discard()
    assert partial_names(storage) == []
    other = storage.open_partial("a/b/c/g.csv", tag="t2")
    with pytest.raises(StorageFull):
        other.write(b"y" * (1 << 20))  # larger than the buffer: written through at once
    other.discard()
    assert partial_names(storage) == []


FORMATS = [
    ("csv", "none"),
    ("csv", "gzip"),
    ("ndjson", "none"),
    ("parquet", "none"),
    ("xlsx", "none"),
]


def test_a_full_disk_fails_attempts_cleanly_and_the_worker_recovers(
    make_runtime: Callable[..., Runtime], small_disk: Path
) -> None:
    """Five exports at once on a nearly full 8 MiB disk: each ends `storage_full`
    (retryable) with no partial left; once space is back, the same worker completes
    them when retried, and a new job too."""
    artifacts = small_disk / "artifacts"
    runtime = make_runtime(storage_url=artifacts.as_uri(), max_attempts=1)
    filler = fill(small_disk, leave=64 * 1024)
    worker = runtime.start_worker(concurrency=5)
    store = runtime.store
    big = [
        store.enqueue(
            NewJob(
                owner=f"o{i}",
                exporter="synthetic",
                params={"rows": 6_000},
                format=fmt,
                compression=compression,
                max_attempts=1,
            )
        )
        for i, (fmt, compression) in enumerate(FORMATS)
    ]
    for job in big:
        failed = wait_for_status(store, job.id, Status.FAILED, Status.COMPLETED, timeout=60)
        assert failed.status == Status.FAILED, job.format
        assert failed.error is not None
        assert (failed.error.code, failed.error.retryable) == ("storage_full", True), failed.error
    assert partial_names(local(runtime)) == []
    assert list(local(runtime).keys()) == []
    filler.unlink()
    for job in big:
        store.retry(job.id)
    small = store.enqueue(NewJob(owner="p", exporter="synthetic", params={"rows": 100}))
    for job in [*big, small]:
        done = wait_for_status(store, job.id, Status.COMPLETED, Status.FAILED, timeout=60)
        assert done.status == Status.COMPLETED, done.error
    wait_for(lambda: worker.running() == [], what="the slots to come free")
    assert partial_names(local(runtime)) == []
