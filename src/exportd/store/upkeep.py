"""`UpkeepStore`: what sweeps and shared configuration need from the job store —
secrets every process must agree on, one-at-a-time leases for sweeps, and the lookups a
sweep makes to tell garbage from live files."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from exportd.jobs import Status, utcnow
from exportd.store.base import StoreBase
from exportd.store.schema import artifacts, jobs, secrets, sweeps, uploads


@dataclass(frozen=True)
class Upload:
    """A multipart upload in progress, as recorded: which claim writes it, and the parts
    committed so far (`[number, etag, size]`, in order)."""

    storage_key: str
    claim_id: str
    upload_id: str
    parts: list[list[Any]]
    created_at: datetime


class UpkeepStore(StoreBase):
    def shared_secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret stored under `name`, created with `make()` by whichever process
        asks first; every process sharing the store gets the same value."""
        with self._tx() as conn:
            value = conn.execute(sa.select(secrets.c.value).where(secrets.c.name == name)).scalar()
        if value:
            return str(value)
        with self._tx(write=True) as conn:
            conn.execute(
                self._insert_ignoring_conflicts(secrets).values(
                    name=name, value=make(), created_at=utcnow()
                )
            )
            stored = conn.execute(sa.select(secrets.c.value).where(secrets.c.name == name))
            return str(stored.scalar_one())

    def take_sweep(self, name: str, holder: str, *, lease_seconds: float, every: float) -> bool:
        """Take the lease of sweep `name`: only if nobody holds it and it last ran at
        least `every` seconds ago. Returns whether this caller may run it now."""
        now = utcnow()
        with self._tx(write=True) as conn:
            conn.execute(self._insert_ignoring_conflicts(sweeps).values(name=name))
            taken = conn.execute(
                sweeps.update()
                .where(
                    sweeps.c.name == name,
                    sa.or_(sweeps.c.lease_until.is_(None), sweeps.c.lease_until < now),
                    sa.or_(
                        sweeps.c.last_run_at.is_(None),
                        sweeps.c.last_run_at <= now - timedelta(seconds=every),
                    ),
                )
                .values(holder=holder, lease_until=now + timedelta(seconds=lease_seconds))
            ).rowcount
        return taken == 1

    def finish_sweep(self, name: str, holder: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(
                sweeps.update()
                .where(sweeps.c.name == name, sweeps.c.holder == holder)
                .values(holder=None, lease_until=None, last_run_at=utcnow())
            )

    def live_claims(self, claim_ids: Collection[str]) -> set[str]:
        """Those of `claim_ids` whose attempt is still running."""
        if not claim_ids:
            return set()
        query = sa.select(jobs.c.claim_id).where(
            jobs.c.status == Status.RUNNING, jobs.c.claim_id.in_(list(claim_ids))
        )
        with self._tx() as conn:
            return {str(row.claim_id) for row in conn.execute(query)}

    def referenced_keys(self, keys: Collection[str]) -> set[str]:
        """Those of `keys` that an artifact row refers to."""
        if not keys:
            return set()
        query = sa.select(artifacts.c.storage_key).where(artifacts.c.storage_key.in_(list(keys)))
        with self._tx() as conn:
            return {str(row.storage_key) for row in conn.execute(query)}

    def sweep_cursor(self, name: str) -> str | None:
        """How far the incremental sweep `name` got (None before its first run)."""
        with self._tx() as conn:
            value = conn.execute(sa.select(sweeps.c.cursor).where(sweeps.c.name == name))
            found: str | None = value.scalar()
            return found

    def set_sweep_cursor(self, name: str, cursor: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(self._insert_ignoring_conflicts(sweeps).values(name=name))
            conn.execute(sweeps.update().where(sweeps.c.name == name).values(cursor=cursor))

    # -- multipart uploads (the `UploadLog` an object storage writes to) -------------------

    def upload_started(self, storage_key: str, claim_id: str, upload_id: str) -> None:
        now = utcnow()
        with self._tx(write=True) as conn:
            conn.execute(uploads.delete().where(uploads.c.storage_key == storage_key))
            conn.execute(
                uploads.insert().values(
                    storage_key=storage_key,
                    claim_id=claim_id,
                    upload_id=upload_id,
                    parts=[],
                    created_at=now,
                    updated_at=now,
                )
            )

    def upload_part(self, storage_key: str, number: int, etag: str, size: int) -> None:
        with self._tx(write=True) as conn:
            self._relax_durability(conn)  # a lost part record only costs a re-upload
            parts = conn.execute(
                sa.select(uploads.c.parts).where(uploads.c.storage_key == storage_key)
            ).scalar()
            if parts is None:
                return
            conn.execute(
                uploads.update()
                .where(uploads.c.storage_key == storage_key)
                .values(parts=[*parts, [number, etag, size]], updated_at=utcnow())
            )

    def upload_ended(self, storage_key: str) -> None:
        """The upload was completed or aborted: forget it."""
        with self._tx(write=True) as conn:
            conn.execute(uploads.delete().where(uploads.c.storage_key == storage_key))

    def uploads_of_dead_claims(self, limit: int = 500) -> list[Upload]:
        """Recorded uploads whose attempt is no longer running: nothing will complete
        them."""
        running = sa.select(jobs.c.claim_id).where(
            jobs.c.status == Status.RUNNING, jobs.c.claim_id.is_not(None)
        )
        query = (
            uploads.select()
            .where(uploads.c.claim_id.not_in(running))
            .order_by(uploads.c.created_at)
            .limit(limit)
        )
        with self._tx() as conn:
            return [
                Upload(r.storage_key, r.claim_id, r.upload_id, list(r.parts), r.created_at)
                for r in conn.execute(query)
            ]
