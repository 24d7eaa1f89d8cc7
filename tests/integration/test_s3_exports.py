"""Exports end to end on S3 storage (a real SeaweedFS), through a real worker: every
tabular format and compression gives the same bytes as on local storage, large files go
up in parts, parts and bundles and documents publish whole, and a cancelled export leaves
no object and no upload behind."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest
import sqlalchemy as sa

from conftest import wait_for, wait_for_status
from exportd.jobs import Artifact, Job, NewJob, Status
from exportd.runtime import Runtime
from exportd.storage import S3Storage
from exportd.store import SqlJobStore
from exportd.store.schema import uploads
from support.seaweed import SeaweedFS

TABULAR = ["csv", "tsv", "ndjson", "json", "parquet", "xlsx", "html", "markdown"]
COMPRESSED = [("csv", "gzip"), ("csv", "zstd"), ("csv", "brotli"), ("parquet", "zstd")]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is SQLite: the storage is what they test."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


@pytest.fixture
def on_s3(make_runtime: Callable[..., Runtime], s3_settings: dict[str, Any]) -> Runtime:
    runtime = make_runtime(**s3_settings)
    assert isinstance(runtime.storage, S3Storage)
    runtime.start_worker(concurrency=2)
    return runtime


def enqueue(runtime: Runtime, exporter: str, params: dict[str, Any], **kw: Any) -> Job:
    return runtime.store.enqueue(NewJob(owner="alice", exporter=exporter, params=params, **kw))


def finished(runtime: Runtime, job: Job, timeout: float = 60) -> Job:
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED, timeout=timeout)
    assert done.status == Status.COMPLETED, done.error
    return done


def read(runtime: Runtime, artifact: Artifact) -> bytes:
    with runtime.storage.open_read(artifact.storage_key) as handle:
        data: bytes = handle.read()
    return data


def recorded_uploads(store: SqlJobStore) -> list[str]:
    with store.engine.connect() as conn:
        return [row.storage_key for row in conn.execute(sa.select(uploads.c.storage_key))]


def assert_only(runtime: Runtime, seaweed: SeaweedFS, artifacts: list[Artifact]) -> None:
    """The bucket holds exactly these artifacts under the test's prefix, each matching its
    row's size and sha256, and no upload is left in progress or recorded."""
    storage = runtime.storage
    assert isinstance(storage, S3Storage)
    assert sorted(storage.keys()) == sorted(a.storage_key for a in artifacts)
    for artifact in artifacts:
        data = read(runtime, artifact)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (artifact.size, artifact.sha256)
    assert seaweed.incomplete_uploads(storage.location.root) == []
    assert recorded_uploads(runtime.store) == []


def test_every_format_is_byte_identical_to_local_storage(
    on_s3: Runtime, make_runtime: Callable[..., Runtime], seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """Each tabular format, uncompressed and compressed, gives on S3 the very file that
    local storage gets (same size and sha256), with the sha256 on the object."""
    local = make_runtime(database_url=f"sqlite:///{tmp_path / 'local.db'}", home=tmp_path / "l")
    local.start_worker(concurrency=2)
    kinds = [(fmt, "none") for fmt in TABULAR] + COMPRESSED
    params = {"rows": 3000, "seed": 7}
    pairs = [
        (enqueue(on_s3, "synthetic", params, format=f, compression=c),
         enqueue(local, "synthetic", params, format=f, compression=c))
        for f, c in kinds
    ]  # fmt: skip
    made: list[Artifact] = []
    for (fmt, compression), (remote, here) in zip(kinds, pairs, strict=True):
        (artifact,) = finished(on_s3, remote).artifacts
        (expected,) = finished(local, here).artifacts
        assert (artifact.size, artifact.sha256) == (expected.size, expected.sha256), fmt
        assert read(on_s3, artifact) == read(local, expected), (fmt, compression)
        made.append(artifact)
    assert_only(on_s3, seaweed, made)
    storage = on_s3.storage
    assert isinstance(storage, S3Storage)
    head = seaweed.client().head_object(
        Bucket=seaweed.bucket, Key=storage.location.object_name(made[0].storage_key)
    )
    assert head["Metadata"]["sha256"] == made[0].sha256


def test_a_large_export_goes_up_in_parts(on_s3: Runtime, seaweed: SeaweedFS) -> None:
    """An export several parts long (5 MiB parts) is one object with the right bytes,
    tagged with its sha256; its upload is no longer recorded."""
    done = finished(on_s3, enqueue(on_s3, "synthetic", {"rows": 120_000, "seed": 3}))
    (artifact,) = done.artifacts
    assert artifact.size > 3 * 5 * 2**20
    assert_only(on_s3, seaweed, [artifact])
    storage = on_s3.storage
    assert isinstance(storage, S3Storage)
    name = storage.location.object_name(artifact.storage_key)
    tagging = seaweed.client().get_object_tagging(Bucket=seaweed.bucket, Key=name)
    assert {t["Key"]: t["Value"] for t in tagging["TagSet"]} == {"sha256": artifact.sha256}


@pytest.mark.parametrize(
    "options",
    [{"max_rows_per_file": 1000}, {"max_bytes_per_file": 6 * 2**20}],
    ids=["rows", "bytes"],
)
def test_parts_publish_with_their_manifest(
    on_s3: Runtime, seaweed: SeaweedFS, options: dict[str, int]
) -> None:
    """A split export publishes every part (small ones put whole, 6 MiB ones in parts
    after the next part moved them out of memory) and a manifest listing them all."""
    rows = 2500 if "max_rows_per_file" in options else 80_000
    done = finished(
        on_s3, enqueue(on_s3, "synthetic", {"rows": rows}, compression="none", options=options)
    )
    by_name = {a.name: a for a in done.artifacts}
    manifest = json.loads(read(on_s3, by_name.pop("manifest.json")))
    assert [f["name"] for f in manifest["files"]] == sorted(by_name)
    assert len(by_name) >= 3
    assert sum(f["rows"] for f in manifest["files"]) == rows
    assert all(f["sha256"] == by_name[f["name"]].sha256 for f in manifest["files"])
    assert_only(on_s3, seaweed, done.artifacts)


def test_a_bundle_is_one_zip_object(on_s3: Runtime, seaweed: SeaweedFS) -> None:
    """`options.formats` gives one zip holding each format and the manifest."""
    done = finished(
        on_s3, enqueue(on_s3, "synthetic", {"rows": 300}, options={"formats": ["csv", "json"]})
    )
    (artifact,) = done.artifacts
    archive = zipfile.ZipFile(io.BytesIO(read(on_s3, artifact)))
    manifest = json.loads(archive.read("manifest.json"))
    assert [f["rows"] for f in manifest["files"]] == [300, 300]
    assert_only(on_s3, seaweed, [artifact])


def test_a_document_export_is_stored_on_s3(on_s3: Runtime, seaweed: SeaweedFS) -> None:
    """A PDF report rendered by the document exporter is stored whole."""
    params = {"title": "Quarterly", "data": {"rows": [{"a": 1}, {"a": 2}]}}
    done = finished(on_s3, enqueue(on_s3, "document", params, format="pdf"))
    (artifact,) = done.artifacts
    text = pypdf.PdfReader(io.BytesIO(read(on_s3, artifact))).pages[0].extract_text()
    assert "Quarterly" in text
    assert_only(on_s3, seaweed, [artifact])


def test_a_cancelled_export_leaves_no_object_and_no_upload(
    on_s3: Runtime, seaweed: SeaweedFS
) -> None:
    """Cancelled after parts went up, the export's upload is aborted: nothing in the
    bucket, nothing in progress, nothing recorded."""
    params = {"batches": 400, "rows_per_batch": 20_000, "delay": 0.01}
    job = enqueue(on_s3, "slow", params)
    wait_for(lambda: recorded_uploads(on_s3.store), what="an upload to start")
    storage = on_s3.storage
    assert isinstance(storage, S3Storage)
    assert len(seaweed.incomplete_uploads(storage.location.root)) == 1
    on_s3.store.request_cancel(job.id)
    done = wait_for_status(on_s3.store, job.id, Status.CANCELLED, Status.COMPLETED)
    assert done.status == Status.CANCELLED
    wait_for(lambda: not on_s3.workers[0].running(), what="the slot to let go of the job")
    assert_only(on_s3, seaweed, [])
