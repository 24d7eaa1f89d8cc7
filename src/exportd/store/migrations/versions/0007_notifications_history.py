"""Delivery and history: webhooks, the outbox, labels, actors and the audit list.

- `exportd_webhooks`: an owner's endpoints, the events they want, their signing secret
  (and the previous one, valid for a grace period after a rotation), and whether they
  were disabled (410, or failing for days).
- `exportd_outbox`: one row per message to deliver (a webhook call or an e-mail), written
  in the same transaction as the job's terminal transition, with its attempts, the next
  try and a lease for the deliverer holding it. Its id is the message id receivers see
  (`webhook-id`), the same on every retry.
- `exportd_jobs.labels` (a small string map, also indexed in `exportd_job_labels` for
  filtering), `notify` (one-off delivery targets), `manual_retries`, `created_by`.
- `exportd_job_events.actor`: who caused the event (a token's owner/name, or `worker`).
- `exportd_audit`: what was deleted, by whom and when, once its events are gone.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exportd_jobs") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("notify", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("manual_retries", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("created_by", sa.String(length=200), nullable=True))
    with op.batch_alter_table("exportd_jobs") as batch:
        batch.alter_column("labels", server_default=None)
        batch.alter_column("manual_retries", server_default=None)
    with op.batch_alter_table("exportd_job_events") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=200), nullable=True))
    op.create_table(
        "exportd_job_labels",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "key"),
    )
    op.create_index(
        "ix_exportd_job_labels_lookup", "exportd_job_labels", ["owner", "key", "value", "job_id"]
    )
    op.create_table(
        "exportd_webhooks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exportd_webhooks_owner", "exportd_webhooks", ["owner", "id"])
    op.create_table(
        "exportd_outbox",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("webhook_id", sa.String(length=36), nullable=True),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_holder", sa.String(length=100), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_exportd_outbox_due",
        "exportd_outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_exportd_outbox_webhook", "exportd_outbox", ["webhook_id", "created_at"])
    op.create_index("ix_exportd_outbox_job", "exportd_outbox", ["job_id"])
    op.create_table(
        "exportd_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exportd_audit_owner", "exportd_audit", ["owner", "id"])


def downgrade() -> None:
    op.drop_index("ix_exportd_audit_owner", table_name="exportd_audit")
    op.drop_table("exportd_audit")
    for name in ("ix_exportd_outbox_job", "ix_exportd_outbox_webhook", "ix_exportd_outbox_due"):
        op.drop_index(name, table_name="exportd_outbox")
    op.drop_table("exportd_outbox")
    op.drop_index("ix_exportd_webhooks_owner", table_name="exportd_webhooks")
    op.drop_table("exportd_webhooks")
    op.drop_index("ix_exportd_job_labels_lookup", table_name="exportd_job_labels")
    op.drop_table("exportd_job_labels")
    with op.batch_alter_table("exportd_job_events") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("exportd_jobs") as batch:
        for column in ("created_by", "manual_retries", "notify", "labels"):
            batch.drop_column(column)
