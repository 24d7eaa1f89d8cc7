"""Alembic environment: always driven programmatically by `exportd.store.migrate`."""

from __future__ import annotations

from alembic import context

from exportd.store.schema import VERSION_TABLE, metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
