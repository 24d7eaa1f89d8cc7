"""`UpkeepStore`: what sweeps and shared configuration need from the job store —
secrets every process must agree on, one-at-a-time leases for sweeps, and the lookups a
sweep makes to tell garbage from live files."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta

import sqlalchemy as sa

from exportd.jobs import Status, utcnow
from exportd.store.base import StoreBase
from exportd.store.schema import artifacts, jobs, secrets, sweeps


class UpkeepStore(StoreBase):
    def _insert_ignoring_conflicts(self, table: sa.Table) -> sa.Insert:
        if self.dialect_name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

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
