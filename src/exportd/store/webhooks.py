"""`WebhookStore`: an owner's webhook endpoints — create, read, change, delete, rotate
the signing secret — and disabling an endpoint (a `410 Gone`, or failing for days),
which also ends its pending messages. Every read and change takes an owner scope:
`None` is an admin's (every owner's endpoints), another owner's endpoint is not found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.jobs import new_id, utcnow
from exportd.store.deliveries import (
    DeliveryAttempt,
    DeliveryStore,
    Message,
    fail_pending,
    owner_notice,
)
from exportd.store.schema import outbox, webhooks


@dataclass(frozen=True)
class Webhook:
    id: str
    owner: str
    url: str
    events: list[str]
    description: str | None
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a message is signed with now: the current one, and the previous
        one while its grace period lasts."""
        found = [self.secret]
        until = self.previous_secret_until
        if self.previous_secret and until is not None and until > (now or utcnow()):
            found.append(self.previous_secret)
        return found


def new_webhook_id() -> str:
    return "wh_" + new_id().replace("-", "")


def webhook_from_row(row: Any) -> Webhook:
    return Webhook(**{column.name: getattr(row, column.name) for column in webhooks.columns})


class WebhookStore(DeliveryStore):
    def create_webhook(
        self, owner: str, url: str, events: Sequence[str], description: str | None, secret: str
    ) -> Webhook:
        now = utcnow()
        values = {
            "id": new_webhook_id(),
            "owner": owner,
            "url": url,
            "events": list(events),
            "description": description,
            "secret": secret,
            "created_at": now,
            "updated_at": now,
        }
        with self._tx(write=True) as conn:
            row = conn.execute(webhooks.insert().values(**values).returning(*webhooks.c)).one()
        return webhook_from_row(row)

    def get_webhook(self, webhook_id: str, owner: str | None = None) -> Webhook | None:
        with self._tx() as conn:
            row = conn.execute(self._webhook_query(webhook_id, owner)).first()
        return None if row is None else webhook_from_row(row)

    def count_webhooks(self, owner: str) -> int:
        query = sa.select(sa.func.count()).where(webhooks.c.owner == owner)
        with self._tx() as conn:
            return int(conn.execute(query).scalar_one())

    def list_webhooks(
        self, owner: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Webhook], str | None]:
        """Newest first; returns the page and the cursor of the next one."""
        query = webhooks.select().order_by(webhooks.c.id.desc()).limit(limit + 1)
        if owner is not None:
            query = query.where(webhooks.c.owner == owner)
        if cursor:
            query = query.where(webhooks.c.id < cursor)
        with self._tx() as conn:
            found = [webhook_from_row(row) for row in conn.execute(query)]
        more = len(found) > limit
        found = found[:limit]
        return found, (found[-1].id if more and found else None)

    def update_webhook(
        self, webhook_id: str, owner: str | None, changes: dict[str, Any]
    ) -> Webhook | None:
        """Change `url`, `events`, `description`; `enabled=True` enables a disabled
        endpoint again (its failure streak forgotten), `enabled=False` disables it."""
        now = utcnow()
        values = {k: v for k, v in changes.items() if k in ("url", "events", "description")}
        enabled = changes.get("enabled")
        if enabled is True:
            values.update(disabled_at=None, disabled_reason=None, failing_since=None)
        with self._tx(write=True) as conn:
            found = conn.execute(self._webhook_query(webhook_id, owner)).first()
            if found is None:
                return None
            if enabled is False and found.disabled_at is None:
                self._disable_in(conn, webhook_id, "disabled by its owner", now)
            row = conn.execute(
                webhooks.update()
                .where(webhooks.c.id == webhook_id)
                .values(updated_at=now, **values)
                .returning(*webhooks.c)
            ).one()
        return webhook_from_row(row)

    def delete_webhook(self, webhook_id: str, owner: str | None = None) -> bool:
        """Delete the endpoint; its pending messages fail (`webhook_deleted`), its
        delivery history stays with the jobs'."""
        with self._tx(write=True) as conn:
            locked = self._webhook_query(webhook_id, owner).with_for_update()
            if conn.execute(locked).first() is None:
                return False
            fail_pending(conn, webhook_id, "webhook_deleted", "the webhook was deleted")
            conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))
        return True

    def rotate_webhook_secret(
        self, webhook_id: str, owner: str | None, secret: str, grace: timedelta
    ) -> Webhook | None:
        """A new secret; the one it replaces keeps signing too for `grace`."""
        now = utcnow()
        with self._tx(write=True) as conn:
            row = conn.execute(
                webhooks.update()
                .where(webhooks.c.id == webhook_id)
                .where(*([webhooks.c.owner == owner] if owner is not None else []))
                .values(
                    previous_secret=webhooks.c.secret,
                    previous_secret_until=now + grace,
                    secret=secret,
                    updated_at=now,
                )
                .returning(*webhooks.c)
            ).first()
        return None if row is None else webhook_from_row(row)

    def disable_webhook(
        self, webhook_id: str, reason: str, *, notice_to: str | None = None, job_id: str = ""
    ) -> bool:
        """Disable the endpoint and fail its pending messages; with `notice_to`, queue an
        e-mail telling its owner (through the outbox, with retries). False if it was
        already disabled or is gone."""
        with self._tx(write=True) as conn:
            return self._disable_and_tell(conn, webhook_id, reason, notice_to, job_id)

    def message_gone(
        self,
        msg: Message,
        attempt: DeliveryAttempt,
        reason: str,
        *,
        notice_to: str | None = None,
    ) -> bool:
        """Record the attempt its endpoint answered `410 Gone` (the message fails for
        good) and disable the endpoint, in one transaction: nobody sees the message failed
        while its endpoint still looks enabled. True if this disabled it."""
        webhook_id = msg.webhook_id
        assert webhook_id is not None

        def once() -> bool:
            with self._tx(write=True) as conn:
                self._failed_in(conn, msg, attempt, None)
                return self._disable_and_tell(conn, webhook_id, reason, notice_to, msg.job_id)

        return self._retrying(once, f"message {msg.id}")

    def _disable_and_tell(
        self, conn: Connection, webhook_id: str, reason: str, notice_to: str | None, job_id: str
    ) -> bool:
        now = utcnow()
        done = self._disable_in(conn, webhook_id, reason, now)
        if done is not None and notice_to:
            conn.execute(outbox.insert().values(owner_notice(done, notice_to, job_id, now)))
            self._notify(conn, "outbox", {"count": 1})
        return done is not None

    def _disable_in(
        self, conn: Connection, webhook_id: str, reason: str, now: datetime
    ) -> Webhook | None:
        row = conn.execute(
            webhooks.update()
            .where(webhooks.c.id == webhook_id, webhooks.c.disabled_at.is_(None))
            .values(disabled_at=now, disabled_reason=reason[:500], updated_at=now)
            .returning(*webhooks.c)
        ).first()
        if row is None:
            return None
        fail_pending(conn, webhook_id, "webhook_disabled", f"the webhook was disabled: {reason}")
        return webhook_from_row(row)

    @staticmethod
    def _webhook_query(webhook_id: str, owner: str | None) -> sa.Select[Any]:
        query = webhooks.select().where(webhooks.c.id == webhook_id)
        if owner is not None:
            query = query.where(webhooks.c.owner == owner)
        return query
