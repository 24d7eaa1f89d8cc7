"""Active jobs by owner: a partial index of the queued and running jobs, which the
active-job limit counts on every creation. Without it the count walks every job the
owner ever had (the owner listing index), so creation slowed down as finished jobs piled
up; with it the count reads only the owner's live jobs.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.create_index(
        "ix_exportd_jobs_active",
        "exportd_jobs",
        ["owner"],
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_exportd_jobs_active", table_name="exportd_jobs")
