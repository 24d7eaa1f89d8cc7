"""`exportd worker` processes on S3 storage: a worker SIGKILLed in the middle of a
multipart upload leaves an upload in progress, recorded with its committed parts; after
the rescue and the sweeps no upload is left, and the job completes once, on another
worker, with the right bytes."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from test_processes import expected_slow_csv

from conftest import wait_for, wait_for_status
from exportd.config import Settings
from exportd.jobs import NewJob, Status
from exportd.storage import S3Storage, open_storage
from exportd.store import SqlJobStore, open_store
from exportd.store.schema import uploads
from exportd.worker.sweeper import Sweeper
from support.seaweed import SeaweedFS

pytestmark = pytest.mark.slow

Spawn = Callable[..., subprocess.Popen[bytes]]
BATCHES, ROWS = 60, 20_000
"""About 21 MB of CSV: four 5 MiB parts and a last one."""


def recorded(store: SqlJobStore) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(uploads)))


def test_a_killed_upload_is_aborted_and_the_job_completes_once(
    settings_for: Callable[..., Settings],
    spawn_worker: Spawn,
    s3_settings: dict[str, Any],
    seaweed: SeaweedFS,
) -> None:
    """SIGKILL after a part is committed: the upload stays in progress and recorded;
    another worker rescues the job and redoes it; after a sweep S3 shows no upload in
    progress, the log none, and the bucket holds the one correct file."""
    settings = settings_for(lease_seconds=1.5, **s3_settings)
    store = open_store(settings.resolved_database_url())
    store.migrate()
    storage = open_storage(settings.resolved_storage_url(), settings)
    assert isinstance(storage, S3Storage)
    storage.attach(store)
    prefix = storage.location.root
    params = {"batches": BATCHES, "rows_per_batch": ROWS, "delay": 0.05}
    job = store.enqueue(NewJob(owner="alice", exporter="slow", params=params))
    victim = spawn_worker(settings)
    wait_for(lambda: any(row.parts for row in recorded(store)), timeout=60, what="a committed part")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert store.get(job.id).status == Status.RUNNING  # nobody knows yet
    (dead,) = recorded(store)
    listed = seaweed.client().list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    assert [u["UploadId"] for u in listed["Uploads"]] == [dead.upload_id]
    spawn_worker(settings)
    done = wait_for_status(store, job.id, Status.COMPLETED, Status.FAILED, timeout=120)
    assert (done.status, done.attempt) == (Status.COMPLETED, 2)
    sweeper = Sweeper(store, storage, holder="test", grace_seconds=0, interval_seconds=300)
    sweeper.sweep(force=True)
    assert seaweed.incomplete_uploads(prefix) == []
    assert recorded(store) == []
    (artifact,) = done.artifacts
    assert dead.claim_id not in artifact.storage_key
    with storage.open_read(artifact.storage_key) as handle:
        data = handle.read()
    expected = expected_slow_csv(BATCHES, ROWS)
    assert data == expected
    assert (artifact.size, artifact.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert list(storage.keys()) == [artifact.storage_key]
    types = [e.type for e in store.events_after(0, job_id=job.id) if e.type != "progress"]
    assert types == ["created", "started", "rescued", "started", "completed"]
    store.dispose()
