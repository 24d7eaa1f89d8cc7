"""Several artifacts per attempt through a real worker: parts with a manifest, zip
bundles, and nothing left behind on refusal, cancellation or a lost lease."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_for, wait_for_status
from exportd.errors import LeaseLost
from exportd.jobs import Job, NewJob, Status
from exportd.runtime import Runtime
from exportd.storage import LocalStorage


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is always SQLite (the store is not what they test)."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def run(runtime: Runtime, exporter: str, params: dict[str, Any], **kw: Any) -> Job:
    job = runtime.store.enqueue(NewJob(owner="alice", exporter=exporter, params=params, **kw))
    if not runtime.workers:
        runtime.start_worker(concurrency=1)
    return wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)


def files(runtime: Runtime) -> tuple[list[str], list[Path]]:
    storage = runtime.storage
    assert isinstance(storage, LocalStorage)
    return sorted(storage.keys()), sorted((storage.root / ".partial").iterdir())


def read(runtime: Runtime, key: str) -> bytes:
    with runtime.storage.open_read(key) as handle:
        data: bytes = handle.read()
    return data


def test_sharded_export_publishes_parts_and_a_manifest(
    make_runtime: Callable[..., Runtime],
) -> None:
    """Each part is an artifact whose size and sha256 match its file; the manifest
    artifact lists them all; nothing else is on disk."""
    runtime = make_runtime()
    done = run(
        runtime,
        "synthetic",
        {"rows": 2500},
        compression="zstd",
        options={"max_rows_per_file": 1000},
    )
    assert done.status == Status.COMPLETED, done.error
    names = [a.name for a in done.artifacts]
    assert sorted(names) == [
        "manifest.json",
        "part-00000.csv.zst",
        "part-00001.csv.zst",
        "part-00002.csv.zst",
    ]
    by_name = {a.name: a for a in done.artifacts}
    for artifact in done.artifacts:
        data = read(runtime, artifact.storage_key)
        assert (artifact.size, artifact.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    manifest = json.loads(read(runtime, by_name["manifest.json"].storage_key))
    assert manifest["job_id"] == done.id
    assert [(f["name"], f["rows"]) for f in manifest["files"]] == [
        ("part-00000.csv.zst", 1000),
        ("part-00001.csv.zst", 1000),
        ("part-00002.csv.zst", 500),
    ]
    assert all(f["sha256"] == by_name[f["name"]].sha256 for f in manifest["files"])
    assert files(runtime) == (sorted(a.storage_key for a in done.artifacts), [])


def test_bundle_is_one_zip_artifact(make_runtime: Callable[..., Runtime]) -> None:
    """options.formats gives a single zip artifact holding each format and the manifest."""
    runtime = make_runtime()
    done = run(runtime, "synthetic", {"rows": 300}, options={"formats": ["csv", "xlsx", "json"]})
    assert done.status == Status.COMPLETED, done.error
    (artifact,) = done.artifacts
    assert artifact.name == f"export-{done.id}.zip"
    archive = zipfile.ZipFile(io.BytesIO(read(runtime, artifact.storage_key)))
    manifest = json.loads(archive.read("manifest.json"))
    assert [f["rows"] for f in manifest["files"]] == [300, 300, 300]
    assert len(json.loads(archive.read(f"export-{done.id}.json"))) == 300


def test_too_many_parts_fails_before_writing(make_runtime: Callable[..., Runtime]) -> None:
    """A known total needing more parts than EXPORTD_MAX_PARTS fails permanently with
    too_many_parts and leaves no file."""
    runtime = make_runtime(max_parts=3)
    done = run(runtime, "synthetic", {"rows": 5000}, options={"max_rows_per_file": 1000})
    assert done.error is not None
    assert (done.status, done.error.code, done.attempt) == (Status.FAILED, "too_many_parts", 1)
    assert files(runtime) == ([], [])


def test_cancelled_sharded_export_leaves_no_part(make_runtime: Callable[..., Runtime]) -> None:
    """Parts already finished are partials until the end: a cancel discards them all."""
    runtime = make_runtime()
    job = runtime.store.enqueue(
        NewJob(
            owner="alice",
            exporter="slow",
            params={"batches": 200, "rows_per_batch": 100, "delay": 0.02},
            options={"max_rows_per_file": 150},
        )
    )
    runtime.start_worker(concurrency=1)
    wait_for(lambda: runtime.store.get(job.id).progress.done >= 500, what="some parts")
    runtime.store.request_cancel(job.id)
    done = wait_for_status(runtime.store, job.id, Status.CANCELLED, Status.COMPLETED)
    assert done.status == Status.CANCELLED
    assert files(runtime) == ([], [])


def test_lost_lease_at_completion_deletes_published_files(
    make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the fenced completion finds the job taken away, every published file of the
    attempt is deleted again."""
    runtime = make_runtime()
    calls: list[int] = []

    def taken(*args: Any, **kwargs: Any) -> Job:
        calls.append(len(list(runtime.storage.keys())))
        raise LeaseLost("taken")

    monkeypatch.setattr(runtime.store, "complete", taken)
    job = runtime.store.enqueue(
        NewJob(
            owner="alice",
            exporter="synthetic",
            params={"rows": 300},
            options={"max_rows_per_file": 100},
        )
    )
    runtime.start_worker(concurrency=1)
    wait_for(lambda: calls, what="the completion attempt")
    wait_for(lambda: files(runtime) == ([], []), what="published files to be deleted")
    assert calls == [4]
    assert runtime.store.get(job.id).status == Status.RUNNING
