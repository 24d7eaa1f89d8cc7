"""`/readyz` on a real server, on SQLite and PostgreSQL: ready when the job store answers
with a current schema and the artifact storage answers; otherwise a 503 problem naming
what failed."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import sqlalchemy as sa
from test_api import assert_problem

from conftest import LiveServer
from exportd.storage import LocalStorage
from exportd.store.schema import VERSION_TABLE

Start = Callable[..., LiveServer]


def test_ready_when_store_and_storage_answer(live_server: Start) -> None:
    """Both checks pass: 200 with each check named."""
    server = live_server(workers=False)
    body = server.client(None).get("/readyz").json()
    assert body == {"status": "ready", "checks": {"store": {"ok": True}, "storage": {"ok": True}}}


def test_storage_that_is_gone_is_not_ready(live_server: Start) -> None:
    """The artifact folder removed under the server: 503 naming the storage, the store
    still fine."""
    server = live_server(workers=False)
    storage = server.runtime.storage
    assert isinstance(storage, LocalStorage)
    shutil.rmtree(storage.root)
    body = assert_problem(server.client(None).get("/readyz"), 503, "not_ready")
    assert body["failed"] == ["storage"]
    assert body["checks"]["store"] == {"ok": True}
    assert "storage" in body["detail"]


def test_a_store_with_pending_migrations_is_not_ready(live_server: Start) -> None:
    """A schema older than this version's: 503 naming the store and the migration."""
    server = live_server(workers=False)
    version = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
    engine = server.runtime.store.engine
    with engine.begin() as conn:
        current = conn.execute(sa.select(version.c.version_num)).scalar_one()
        conn.execute(version.update().values(version_num="0001"))
    try:
        body = assert_problem(server.client(None).get("/readyz"), 503, "not_ready")
    finally:
        with engine.begin() as conn:
            conn.execute(version.update().values(version_num=current))
    assert body["failed"] == ["store"]
    assert "exportd migrate" in body["checks"]["store"]["detail"]
    assert body["checks"]["storage"] == {"ok": True}
