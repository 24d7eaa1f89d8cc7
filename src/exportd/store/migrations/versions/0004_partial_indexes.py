"""Partial indexes where most rows have nothing to index: running jobs by owner (the cap
check), jobs in a batch, jobs with an idempotency key. A job's status changes twice per
run and each change writes a new row version into every index whose predicate it meets:
six index entries per change become three (primary key, owner listing, and the status's
own partial index, if any).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PARTIAL = [
    ("ix_exportd_jobs_running", ["owner"], "status = 'running'", False),
    ("ix_exportd_jobs_batch", ["batch_id"], "batch_id IS NOT NULL", False),
    (
        "ix_exportd_jobs_idempotency",
        ["owner", "idempotency_key"],
        "idempotency_key IS NOT NULL",
        True,
    ),
]


def upgrade() -> None:
    op.drop_index("ix_exportd_jobs_running_owner", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_batch", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_idempotency", table_name="exportd_jobs")
    for name, columns, where, unique in PARTIAL:
        op.create_index(
            name,
            "exportd_jobs",
            columns,
            unique=unique,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    for name, _, _, _ in PARTIAL:
        op.drop_index(name, table_name="exportd_jobs")
    op.create_index("ix_exportd_jobs_running_owner", "exportd_jobs", ["status", "owner"])
    op.create_index("ix_exportd_jobs_batch", "exportd_jobs", ["batch_id"])
    op.create_index(
        "ix_exportd_jobs_idempotency", "exportd_jobs", ["owner", "idempotency_key"], unique=True
    )
