"""The active-job limit counts through the partial index of active jobs (migration
0009), not through every job the owner ever had: checked in PostgreSQL's plan for the
store's own count, on an owner with 20,000 finished jobs and a handful of live ones."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from conftest import temporary_pg_database
from exportd.jobs import NewJob
from exportd.store import open_store
from exportd.store.actions import ACTIVE
from exportd.store.schema import ACTIVE_JOBS, jobs


@pytest.mark.postgres
def test_the_active_count_reads_only_the_owners_live_jobs() -> None:
    with temporary_pg_database("exportd_active") as url:
        store = open_store(url)
        try:
            store.migrate()
            for _ in range(3):
                store.enqueue(NewJob(owner="big", exporter="noop", params={}))
            made = {"id": "md5(g::text)::uuid::text", "status": "'completed'"}
            made |= {"idempotency_key": "NULL", "finished_at": "now()"}
            names = [c.name for c in jobs.columns]
            copied = ", ".join(made.get(name, name) for name in names)
            with store.engine.begin() as conn:
                conn.execute(
                    sa.text(
                        f"INSERT INTO exportd_jobs ({', '.join(names)}) SELECT {copied} "
                        "FROM (SELECT * FROM exportd_jobs LIMIT 1) AS j, "
                        "generate_series(1, 20000) AS g"
                    )
                )
                conn.execute(sa.text("ANALYZE exportd_jobs"))
            count = (
                sa.select(sa.func.count())
                .select_from(jobs)
                .where(jobs.c.owner == "big", sa.text(ACTIVE_JOBS))
            )
            compiled = count.compile(store.engine, compile_kwargs={"literal_binds": True})
            with store.engine.connect() as conn:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
            assert "ix_exportd_jobs_active" in plan, plan
            assert store.count_active("big") == 3
            assert {str(s) for s in ACTIVE} == {"queued", "running"}
        finally:
            store.dispose()
