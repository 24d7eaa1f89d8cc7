"""Web sessions: the browser's cookie, obtained with an API token.

- `exportd_sessions`: one row per signed-in browser, keyed by the sha256 of the cookie's
  secret (the secret itself is never stored), bound to the API token it was obtained
  with (a revoked token ends its sessions) and expiring at `expires_at`.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exportd_sessions",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index("ix_exportd_sessions_token", "exportd_sessions", ["token_id"])
    op.create_index("ix_exportd_sessions_expires", "exportd_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_exportd_sessions_expires", table_name="exportd_sessions")
    op.drop_index("ix_exportd_sessions_token", table_name="exportd_sessions")
    op.drop_table("exportd_sessions")
