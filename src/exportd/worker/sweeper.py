"""`Sweeper`: removes what no attempt will ever finish or claim — partial files of
attempts that are no longer running, published files that no artifact row refers to —
and the files of expired exports.

Each kind of sweep runs in one process at a time (a lease row in the store) and works in
bounded batches, one short read per batch. A file is garbage only once it is older than
the grace period *and* its attempt is not running *and* (for published files) no artifact
refers to it. The attempt is looked up before the references: a completion that commits
between the two reads is then seen as a reference, never missed."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from exportd.jobs import utcnow
from exportd.storage import ArtifactStorage, PartialFile, StoredFile
from exportd.store import SqlJobStore
from exportd.store.retention import expire

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 500
KINDS = ("partials", "orphans", "expired")


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
    orphans: int = 0
    expired: int = 0
    skipped: list[str] = field(default_factory=list)
    """Kinds another process was running (or had just run)."""

    def total(self) -> int:
        return self.partials + self.orphans + self.expired


class Sweeper:
    def __init__(
        self,
        store: SqlJobStore,
        storage: ArtifactStorage,
        *,
        holder: str,
        grace_seconds: float,
        interval_seconds: float,
    ) -> None:
        self.store = store
        self.storage = storage
        self.holder = holder
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval_seconds

    def sweep(self, *, force: bool = False, dry_run: bool = False) -> SweepReport:
        """Run every kind of sweep this process gets the lease for. `force` ignores when
        they last ran (a lease held by another process is still respected); `dry_run`
        counts what would go and removes nothing."""
        report = SweepReport()
        every = 0.0 if force else self.interval
        for kind in KINDS:
            lease = max(60.0, self.interval)
            if not self.store.take_sweep(kind, self.holder, lease_seconds=lease, every=every):
                report.skipped.append(kind)
                continue
            try:
                setattr(report, kind, getattr(self, f"_{kind}")(dry_run))
            finally:
                self.store.finish_sweep(kind, self.holder)
        if report.total():
            verb = "would remove" if dry_run else "removed"
            log.info(
                "sweep %s %d partial files, %d unreferenced files, %d expired files",
                verb,
                report.partials,
                report.orphans,
                report.expired,
            )
        return report

    def _partials(self, dry_run: bool) -> int:
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
        return removed

    def _orphans(self, dry_run: bool) -> int:
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
        return removed

    def _expired(self, dry_run: bool) -> int:
        if dry_run:
            return 0
        return expire(self.store, self.storage)
