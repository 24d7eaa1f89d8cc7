"""A partial index in claim order (priority desc, run_after, id) over queued jobs,
replacing the (status, priority, run_after, id) index, which left every claim a sort

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_exportd_jobs_claim", table_name="exportd_jobs")
    op.create_index(
        "ix_exportd_jobs_queue",
        "exportd_jobs",
        [sa.text("priority DESC"), "run_after", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_exportd_jobs_queue", table_name="exportd_jobs")
    op.create_index(
        "ix_exportd_jobs_claim",
        "exportd_jobs",
        ["status", "priority", "run_after", "id"],
        unique=False,
    )
