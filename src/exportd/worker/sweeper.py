"""`Sweeper`: removes what no attempt will ever finish or claim — partial files of
attempts that are no longer running (on S3: the multipart uploads in progress that
`ListMultipartUploads` shows), multipart uploads recorded by attempts that are no longer
running, published files that no artifact row refers to, artifact rows whose files are
gone — and runs the lifecycle: files of expired exports, jobs past their retention,
progress events of long-finished jobs.

Each kind of sweep runs in one process at a time (a lease row in the store) and works in
bounded batches, one short read per batch. A file is garbage only once it is older than
the grace period *and* its attempt is not running *and* (for published files) no artifact
refers to it. The attempt is looked up before the references: a completion that commits
between the two reads is then seen as a reference, never missed."""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from exportd.errors import ArtifactNotFound, StorageError
from exportd.formats.output import SCRATCH_PREFIX
from exportd.jobs import Artifact, utcnow
from exportd.storage import ArtifactStorage, PartialFile, StoredFile
from exportd.store import SqlJobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 500
KINDS = ("uploads", "partials", "orphans", "missing", "lifecycle")
MAX_BATCHES = 20
"""A lifecycle step runs at most this many batches per sweep, so one sweep stays short."""


def batched(items: Iterable[T], size: int = BATCH) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def claim_of(key: str) -> str | None:
    """The claim id in a key `{owner}/{job id}/{claim id}/{name…}`."""
    parts = key.split("/")
    return parts[2] if len(parts) >= 4 else None


@dataclass
class SweepReport:
    partials: int = 0
    """Partial files of attempts no longer running."""
    uploads: int = 0
    """Recorded multipart uploads of attempts no longer running (aborted)."""
    orphans: int = 0
    """Published files no artifact row referred to."""
    missing: int = 0
    """Artifact rows whose file was gone (dropped)."""
    expired: int = 0
    """Files of expired exports."""
    pruned: int = 0
    """Jobs past their retention (deleted with their events and files)."""
    thinned: int = 0
    """Progress events of long-finished jobs."""
    scratch: int = 0
    """Scratch folders of attempts no longer running, on this host."""
    skipped: list[str] = field(default_factory=list)
    """Kinds another process was running (or had just run)."""

    def total(self) -> int:
        return (
            self.partials
            + self.uploads
            + self.orphans
            + self.missing
            + self.expired
            + self.pruned
            + self.thinned
            + self.scratch
        )

    def summary(self, dry_run: bool = False) -> str:
        verb = "would remove" if dry_run else "removed"
        return (
            f"{verb} {self.partials} partial files, {self.uploads} recorded uploads, "
            f"{self.orphans} unreferenced files, "
            f"{self.missing} rows of missing files, {self.expired} expired files, "
            f"{self.pruned} old jobs, {self.thinned} progress events, "
            f"{self.scratch} scratch folders"
        )


class Sweeper:
    def __init__(
        self,
        store: SqlJobStore,
        storage: ArtifactStorage,
        *,
        holder: str,
        grace_seconds: float,
        interval_seconds: float,
        job_retention_seconds: float = 30 * 86400,
        progress_retention_seconds: float = 86400,
        scratch_dir: Path | None = None,
    ) -> None:
        self.scratch_dir = scratch_dir
        self.store = store
        self.storage = storage
        self.holder = holder
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval_seconds
        self.job_retention = timedelta(seconds=job_retention_seconds)
        self.progress_retention = timedelta(seconds=progress_retention_seconds)

    def sweep(self, *, force: bool = False, dry_run: bool = False) -> SweepReport:
        """Run every kind of sweep this process gets the lease for. `force` ignores when
        they last ran (a lease held by another process is still respected); `dry_run`
        counts what would go and removes nothing."""
        report = SweepReport()
        self._scratch(report, dry_run)  # this host's own folder: no lease needed
        every = 0.0 if force else self.interval
        for kind in KINDS:
            lease = max(60.0, self.interval)
            if not self.store.take_sweep(kind, self.holder, lease_seconds=lease, every=every):
                report.skipped.append(kind)
                continue
            try:
                getattr(self, f"_{kind}")(report, dry_run)
            finally:
                self.store.finish_sweep(kind, self.holder)
        if report.total():
            log.info("sweep %s", report.summary(dry_run))
        return report

    def _scratch(self, report: SweepReport, dry_run: bool) -> None:
        """Scratch folders (`exportd-<claim>-…`) whose attempt is no longer running and
        that have not changed for the grace period: a killed worker's bundle members and
        spreadsheet rows."""
        if self.scratch_dir is None or not self.scratch_dir.is_dir():
            return
        cutoff = (utcnow() - self.grace).timestamp()
        found: dict[str, list[Path]] = {}
        for path in self.scratch_dir.glob(f"{SCRATCH_PREFIX}*"):
            tag = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    found.setdefault(tag, []).append(path)
        live = self.store.live_claims(set(found))
        for tag, paths in found.items():
            if tag in live:
                continue
            for path in paths:
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
                report.scratch += 1

    def _partials(self, report: SweepReport, dry_run: bool) -> None:
        cutoff = utcnow() - self.grace
        removed = 0
        for chunk in batched(self.storage.partials()):
            old: list[PartialFile] = [p for p in chunk if p.modified_at < cutoff]
            live = self.store.live_claims({p.tag for p in old})
            for partial in old:
                if partial.tag not in live:
                    if not dry_run:
                        self.storage.discard_partial(partial)
                    removed += 1
        report.partials = removed

    def _uploads(self, report: SweepReport, dry_run: bool) -> None:
        """Multipart uploads the upload log holds for attempts that are no longer
        running: nothing will complete them, so they are aborted at once (no grace: the
        job store, not a clock, says they are dead). One the storage cannot abort now
        stays recorded for the next sweep."""
        for _ in range(MAX_BATCHES):
            dead = self.store.uploads_of_dead_claims(BATCH)
            if dry_run:
                report.uploads += len(dead)
                return
            aborted = 0
            for upload in dead:
                try:
                    self.storage.abort_upload(upload.storage_key, upload.upload_id)
                except StorageError:
                    log.warning("could not abort the upload of %s", upload.storage_key)
                    continue
                self.store.upload_ended(upload.storage_key)
                aborted += 1
            report.uploads += aborted
            if aborted < len(dead) or len(dead) < BATCH:
                return

    def _orphans(self, report: SweepReport, dry_run: bool) -> None:
        cutoff = utcnow() - self.grace
        removed = 0
        for chunk in batched(self.storage.files()):
            old: list[StoredFile] = [f for f in chunk if f.modified_at < cutoff]
            live = self.store.live_claims({c for f in old if (c := claim_of(f.key))})
            referenced = self.store.referenced_keys([f.key for f in old])
            for file in old:
                if file.key in referenced or claim_of(file.key) in live:
                    continue
                if not dry_run:
                    self.storage.delete(file.key)
                removed += 1
        report.orphans = removed

    def _missing(self, report: SweepReport, dry_run: bool) -> None:
        """Artifact rows whose file is gone (removed by hand, lost with a disk): dropped,
        so the export reads as expired instead of failing at download."""
        cutoff = utcnow() - self.grace
        after = self.store.sweep_cursor("missing") or ""
        for _ in range(MAX_BATCHES):
            rows = self.store.artifacts_after(after)
            if not rows:
                after = ""  # the end: start from the first row next time
                break
            after = rows[-1].job_id
            old = [a for a in rows if a.created_at is not None and a.created_at < cutoff]
            gone = [a for a in old if not self._exists(a.storage_key)]
            report.missing += len(gone) if dry_run else self.store.forget_artifacts(gone)
        if not dry_run:
            self.store.set_sweep_cursor("missing", after)

    def _exists(self, key: str) -> bool:
        try:
            self.storage.size(key)
        except ArtifactNotFound:
            return False
        return True

    def _lifecycle(self, report: SweepReport, dry_run: bool) -> None:
        if dry_run:
            return
        for _ in range(MAX_BATCHES):
            dropped = self.store.expire_due()
            self._remove(dropped)
            report.expired += len(dropped)
            if not dropped:
                break
        for _ in range(MAX_BATCHES):
            pruned, dropped = self.store.prune_finished(utcnow() - self.job_retention)
            self._remove(dropped)
            report.pruned += pruned
            if not pruned:
                break
        for _ in range(MAX_BATCHES):
            thinned = self.store.thin_progress(utcnow() - self.progress_retention)
            report.thinned += thinned
            if not thinned:
                break

    def _remove(self, dropped: Iterable[Artifact]) -> None:
        for art in dropped:
            try:
                self.storage.delete(art.storage_key)
            except StorageError:  # left for the orphan sweep
                log.warning("could not remove %s", art.storage_key, exc_info=True)
