"""The declared schema. Migrations in `store/migrations` must produce exactly this
(a test compares them on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()

SCHEMA_REVISION = "0009"
"""The Alembic revision that `metadata` describes: the head of `store/migrations` (a test
checks it). A store already at it is current without loading Alembic."""
VERSION_TABLE = "exportd_alembic_version"

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: `timestamptz` on PostgreSQL, naive UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


jobs = sa.Table(
    "exportd_jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("exporter", sa.String(200), nullable=False),
    sa.Column("params", sa.JSON(), nullable=False),
    sa.Column("format", sa.String(40), nullable=False),
    sa.Column("compression", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("run_after", UtcDateTime(), nullable=False),
    sa.Column("lease_owner", sa.String(100), nullable=True),
    sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False),
    sa.Column("progress_done", sa.BigInteger(), nullable=False),
    sa.Column("progress_total", sa.BigInteger(), nullable=True),
    sa.Column("progress_unit", sa.String(20), nullable=False),
    sa.Column("progress_message", sa.String(500), nullable=True),
    sa.Column("error_code", sa.String(100), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("error_retryable", sa.Boolean(), nullable=True),
    sa.Column("max_runtime_seconds", sa.Float(), nullable=False),
    sa.Column("filename", sa.String(255), nullable=True),
    sa.Column("batch_id", sa.String(36), nullable=True),
    sa.Column("ttl_seconds", sa.Integer(), nullable=True),
    sa.Column("options", sa.JSON(), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("request_hash", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("claim_id", sa.String(32), nullable=True),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("notify", sa.JSON(), nullable=True),
    sa.Column("manual_retries", sa.Integer(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Index("ix_exportd_jobs_owner_created", "owner", "id"),
)

ACTIVE_JOBS = "status IN ('queued', 'running')"
"""The predicate of the active-jobs index (migration 0009), written out as the count of
active jobs writes it, so that the planner can prove the index covers that query."""

# Partial indexes (migrations 0004, 0006, 0009): a status change writes a row version
# into every index whose predicate the new version meets, so indexes only some rows need
# stay partial.
for _name, _columns, _where, _unique in (
    ("ix_exportd_jobs_running", ("owner",), "status = 'running'", False),
    ("ix_exportd_jobs_active", ("owner",), ACTIVE_JOBS, False),
    ("ix_exportd_jobs_batch", ("batch_id",), "batch_id IS NOT NULL", False),
    ("ix_exportd_jobs_expiry", ("expires_at",), "expires_at IS NOT NULL", False),
    ("ix_exportd_jobs_finished", ("finished_at",), "finished_at IS NOT NULL", False),
    (
        "ix_exportd_jobs_idempotency",
        ("owner", "idempotency_key"),
        "idempotency_key IS NOT NULL",
        True,
    ),
):
    sa.Index(
        _name,
        *(jobs.c[column] for column in _columns),
        unique=_unique,
        postgresql_where=sa.text(_where),
        sqlite_where=sa.text(_where),
    )

# The claim order exactly, queued jobs only: a claim reads the first rows in index order
# instead of sorting the whole queue.
sa.Index(
    "ix_exportd_jobs_queue",
    jobs.c.priority.desc(),
    jobs.c.run_after,
    jobs.c.id,
    postgresql_where=jobs.c.status == "queued",
    sqlite_where=jobs.c.status == "queued",
)

job_events = sa.Table(
    "exportd_job_events",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Index("ix_exportd_job_events_job", "job_id", "id"),
    sa.Index("ix_exportd_job_events_owner", "owner", "id"),
)

artifacts = sa.Table(
    "exportd_artifacts",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("storage_key", sa.String(1024), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("rows", sa.BigInteger(), nullable=True),
    sa.Column("downloads", sa.Integer(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_exportd_artifacts_key", "storage_key"),
)

tokens = sa.Table(
    "exportd_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("admin", sa.Boolean(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)

batches = sa.Table(
    "exportd_batches",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_exportd_batches_owner", "owner", "id"),
)

secrets = sa.Table(
    "exportd_secrets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

sweeps = sa.Table(
    "exportd_sweeps",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("last_run_at", UtcDateTime(), nullable=True),
    sa.Column("cursor", sa.String(100), nullable=True),
)

owners = sa.Table(
    "exportd_owners",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("bytes_stored", sa.BigInteger(), nullable=False),
    sa.Column("artifacts", sa.BigInteger(), nullable=False),
    sa.Column("downloads", sa.BigInteger(), nullable=False),
    sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

uploads = sa.Table(
    "exportd_uploads",
    metadata,
    sa.Column("storage_key", sa.String(1024), primary_key=True),
    sa.Column("claim_id", sa.String(32), nullable=False),
    sa.Column("upload_id", sa.String(1024), nullable=False),
    sa.Column("parts", sa.JSON(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index("ix_exportd_uploads_claim", "claim_id"),
)

job_labels = sa.Table(
    "exportd_job_labels",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Index("ix_exportd_job_labels_lookup", "owner", "key", "value", "job_id"),
)

webhooks = sa.Table(
    "exportd_webhooks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("events", sa.JSON(), nullable=False),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("previous_secret", sa.String(200), nullable=True),
    sa.Column("previous_secret_until", UtcDateTime(), nullable=True),
    sa.Column("disabled_at", UtcDateTime(), nullable=True),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    sa.Column("failing_since", UtcDateTime(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index("ix_exportd_webhooks_owner", "owner", "id"),
)

outbox = sa.Table(
    "exportd_outbox",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("webhook_id", sa.String(36), nullable=True),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("lease_holder", sa.String(100), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("history", sa.JSON(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
    sa.Index(
        "ix_exportd_outbox_due",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index("ix_exportd_outbox_webhook", "webhook_id", "created_at"),
    sa.Index("ix_exportd_outbox_job", "job_id"),
)

audit = sa.Table(
    "exportd_audit",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_exportd_audit_owner", "owner", "id"),
)

web_sessions = sa.Table(
    "exportd_sessions",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.String(36), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Index("ix_exportd_sessions_token", "token_id"),
    sa.Index("ix_exportd_sessions_expires", "expires_at"),
)
