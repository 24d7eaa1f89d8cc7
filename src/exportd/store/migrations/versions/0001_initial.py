"""jobs, job events and artifacts

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exportd_artifacts",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("storage_key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )
    op.create_table(
        "exportd_job_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_exportd_job_events_job", "exportd_job_events", ["job_id", "id"], unique=False
    )
    op.create_index(
        "ix_exportd_job_events_owner", "exportd_job_events", ["owner", "id"], unique=False
    )

    op.create_table(
        "exportd_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("exporter", sa.String(length=200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("compression", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("progress_done", sa.BigInteger(), nullable=False),
        sa.Column("progress_total", sa.BigInteger(), nullable=True),
        sa.Column("progress_unit", sa.String(length=20), nullable=False),
        sa.Column("progress_message", sa.String(length=500), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_retryable", sa.Boolean(), nullable=True),
        sa.Column("max_runtime_seconds", sa.Float(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.Column("ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exportd_jobs_batch", "exportd_jobs", ["batch_id"], unique=False)
    op.create_index(
        "ix_exportd_jobs_claim",
        "exportd_jobs",
        ["status", "priority", "run_after", "id"],
        unique=False,
    )
    op.create_index(
        "ix_exportd_jobs_idempotency", "exportd_jobs", ["owner", "idempotency_key"], unique=True
    )
    op.create_index("ix_exportd_jobs_owner_created", "exportd_jobs", ["owner", "id"], unique=False)
    op.create_index(
        "ix_exportd_jobs_running_owner", "exportd_jobs", ["status", "owner"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_exportd_jobs_running_owner", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_owner_created", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_idempotency", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_claim", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_batch", table_name="exportd_jobs")

    op.drop_table("exportd_jobs")
    op.drop_index("ix_exportd_job_events_owner", table_name="exportd_job_events")
    op.drop_index("ix_exportd_job_events_job", table_name="exportd_job_events")

    op.drop_table("exportd_job_events")
    op.drop_table("exportd_artifacts")
