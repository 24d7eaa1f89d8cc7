"""The artifact lifecycle: expiry, owners' storage accounting and quotas, recorded
multipart uploads, and sweep cursors.

- `exportd_jobs.expires_at`: when a completed export's files expire (set at completion
  from the job's `ttl_seconds` or the default TTL); partial indexes on it and on
  `finished_at` let the expiry, pruning and thinning sweeps read only their candidates.
- `exportd_owners`: per owner, the bytes and files stored (kept up to date in the same
  transactions that add or remove artifact rows, so a quota check reads one row), the
  downloads counted, and an admin's quota override.
- `exportd_uploads`: a multipart upload in progress — its storage key, the claim writing
  it, the upload id and the parts committed — so an abandoned upload can be aborted and
  a later version can resume one.
- `exportd_sweeps.cursor`: how far an incremental sweep (event thinning) has got.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exportd_jobs") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_exportd_jobs_expiry",
        "exportd_jobs",
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_exportd_jobs_finished",
        "exportd_jobs",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_table(
        "exportd_owners",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("bytes_stored", sa.BigInteger(), nullable=False),
        sa.Column("artifacts", sa.BigInteger(), nullable=False),
        sa.Column("downloads", sa.BigInteger(), nullable=False),
        sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    op.execute(
        """
        INSERT INTO exportd_owners
            (owner, bytes_stored, artifacts, downloads, storage_quota_bytes, updated_at)
        SELECT j.owner, coalesce(sum(a.size), 0), count(*), coalesce(sum(a.downloads), 0),
               NULL, CURRENT_TIMESTAMP
        FROM exportd_artifacts a JOIN exportd_jobs j ON j.id = a.job_id
        GROUP BY j.owner
        """
    )
    op.create_table(
        "exportd_uploads",
        sa.Column("storage_key", sa.String(length=1024), nullable=False),
        sa.Column("claim_id", sa.String(length=32), nullable=False),
        sa.Column("upload_id", sa.String(length=1024), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("storage_key"),
    )
    op.create_index("ix_exportd_uploads_claim", "exportd_uploads", ["claim_id"])
    with op.batch_alter_table("exportd_sweeps") as batch:
        batch.add_column(sa.Column("cursor", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exportd_sweeps") as batch:
        batch.drop_column("cursor")
    op.drop_index("ix_exportd_uploads_claim", table_name="exportd_uploads")
    op.drop_table("exportd_uploads")
    op.drop_table("exportd_owners")
    op.drop_index("ix_exportd_jobs_finished", table_name="exportd_jobs")
    op.drop_index("ix_exportd_jobs_expiry", table_name="exportd_jobs")
    with op.batch_alter_table("exportd_jobs") as batch:
        batch.drop_column("expires_at")
