"""Alembic environment: always driven programmatically by `exportd.store.migrate`.

Several processes may start on a fresh store at once (every worker on the embedded SQLite
file migrates it at start): the upgrade takes the database's write lock first
(SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock), so upgrades run one after the
other and each reads the schema version only once it holds the lock — the later ones
find nothing left to do."""

from __future__ import annotations

from alembic import context

from exportd.store.schema import VERSION_TABLE, metadata

MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(1702391811, 0)"
"""exportd's lock space (`store.postgres.LOCK_SPACE` + 3), key 0: one upgrade at a time."""

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    connection.info["exportd_write"] = True  # SQLite: BEGIN IMMEDIATE, waiting its turn
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(MIGRATION_LOCK)
        context.run_migrations()
    connection.commit()
