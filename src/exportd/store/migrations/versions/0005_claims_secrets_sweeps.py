"""Claim ids, shared secrets and sweep leases.

- `exportd_jobs.claim_id`: a fresh id for every claim, kept after the attempt ends. It
  fences a worker's writes, names the attempt's storage keys (never reused, whatever the
  attempt number), and tells a retried completion that it already committed.
  `lease_owner` now names the worker holding the lease (for people), not the fence.
- `exportd_secrets`: values every process sharing the store must agree on, created once
  (the link-signing key).
- `exportd_sweeps`: one row per kind of sweep; a process runs a sweep only while it holds
  the row's lease, so any number of processes sweep one at a time.
- An index on `exportd_artifacts.storage_key`: the sweep asks which stored files an
  artifact row still refers to.

Run it with the workers stopped: an attempt claimed before it has no claim id and is
fenced off (its job is rescued once its lease runs out).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exportd_jobs") as batch:
        batch.add_column(sa.Column("claim_id", sa.String(length=32), nullable=True))
    op.create_table(
        "exportd_secrets",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "exportd_sweeps",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_exportd_artifacts_key", "exportd_artifacts", ["storage_key"])


def downgrade() -> None:
    op.drop_index("ix_exportd_artifacts_key", table_name="exportd_artifacts")
    op.drop_table("exportd_sweeps")
    op.drop_table("exportd_secrets")
    with op.batch_alter_table("exportd_jobs") as batch:
        batch.drop_column("claim_id")
