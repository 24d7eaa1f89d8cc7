"""`DeliveryStore`: the sending half of the outbox (`store.outbox` writes the rows).

A deliverer claims due messages with a lease (`claim_messages`: PostgreSQL
`FOR UPDATE SKIP LOCKED`, SQLite `BEGIN IMMEDIATE`), so no two processes send one
message at once, and a message whose deliverer died is taken again once its lease runs
out. Each claim counts an attempt; what the attempt gave is written with the claim as a
fence (`message_delivered`, `message_failed`), so a deliverer that lost its lease
changes nothing. A message is `pending` (waiting or in flight), `delivered` or `failed`;
`redeliver_message` makes it pending again under the same id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.errors import InvalidTransition
from exportd.jobs import utcnow
from exportd.store.base import StoreBase
from exportd.store.outbox import message_row
from exportd.store.schema import outbox, webhooks

MAX_HISTORY = 50
"""Attempts kept on a message (the oldest go first)."""

LOST = ("deliverer_lost", "the process sending it stopped before the attempt ended")


@dataclass(frozen=True)
class DeliveryAttempt:
    """What one attempt to send a message gave."""

    number: int
    at: datetime
    duration_ms: int
    status_code: int | None = None
    code: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "at": self.at.isoformat(),
            "duration_ms": self.duration_ms,
            "status_code": self.status_code,
            "code": self.code,
            "error": None if self.error is None else self.error[:1000],
        }


@dataclass(frozen=True)
class Message:
    """An outbox row: one message to one target."""

    id: str
    owner: str
    job_id: str
    event_type: str
    channel: str
    webhook_id: str | None
    target: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    lease_holder: str | None
    last_status_code: int | None
    last_error: str | None
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    delivered_at: datetime | None = None


def message_from_row(row: Any) -> Message:
    return Message(**{column.name: getattr(row, column.name) for column in outbox.columns})


def _history(msg_history: Sequence[dict[str, Any]], *entries: dict[str, Any]) -> list[Any]:
    return [*msg_history, *entries][-MAX_HISTORY:]


def fail_pending(conn: Connection, webhook_id: str, code: str, text: str) -> int:
    """Fail the endpoint's pending messages, in flight or not (a sender holding one
    then finds its fence gone)."""
    return int(
        conn.execute(
            outbox.update()
            .where(outbox.c.webhook_id == webhook_id, outbox.c.status == "pending")
            .where(outbox.c.channel == "webhook")
            .values(
                status="failed", last_error=f"{code}: {text}", lease_until=None, lease_holder=None
            )
        ).rowcount
    )


def lock_endpoint(conn: Connection, msg: Message) -> None:
    """Lock the message's endpoint row before the message's own: every transaction that
    writes both (recording an attempt, disabling or deleting the endpoint) takes the
    endpoint first, so they queue instead of deadlocking."""
    if msg.webhook_id is not None and msg.channel == "webhook":
        conn.execute(
            sa.select(webhooks.c.id).where(webhooks.c.id == msg.webhook_id).with_for_update()
        )


def owner_notice(hook: Any, address: str, job_id: str, now: datetime) -> dict[str, Any]:
    """The e-mail row telling an owner that its endpoint `hook` was disabled."""
    data = {
        "webhook_id": hook.id,
        "url": hook.url,
        "reason": hook.disabled_reason,
        "failing_since": None if hook.failing_since is None else hook.failing_since.isoformat(),
    }
    row = message_row(hook, "webhook.disabled", "email", address, data, hook.id)
    row.update(job_id=job_id, created_at=now, next_attempt_at=now)
    row["payload"] = {"type": "webhook.disabled", "timestamp": now.isoformat(), "data": data}
    return row


class DeliveryStore(StoreBase):
    def next_message_due(self) -> datetime | None:
        """When the next pending message can be claimed (a time in the past: now)."""
        now = utcnow()
        free = sa.select(sa.func.min(outbox.c.next_attempt_at)).where(
            outbox.c.status == "pending",
            sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until <= now),
        )
        held = sa.select(sa.func.min(outbox.c.lease_until)).where(
            outbox.c.status == "pending", outbox.c.lease_until > now
        )
        with self._tx() as conn:
            found = [conn.execute(free).scalar(), conn.execute(held).scalar()]
        moments = [moment for moment in found if moment is not None]
        return min(moments) if moments else None

    def claim_messages(
        self, holder: str, limit: int, *, lease_seconds: float, max_attempts: int
    ) -> list[Message]:
        """Take up to `limit` due messages for `lease_seconds`, counting an attempt on
        each. A message taken back from a deliverer that died gets that lost attempt in
        its history; one that has used up `max_attempts` that way fails instead."""
        now = utcnow()
        due = (
            sa.select(outbox)
            .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
            .where(sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until <= now))
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._tx(write=True) as conn:
            rows = conn.execute(due).all()
            take = [row.id for row in rows if self._take_back(conn, row, now, max_attempts)]
            if not take:
                return []
            claimed = conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(take), outbox.c.status == "pending")
                .values(
                    attempts=outbox.c.attempts + 1,
                    lease_holder=holder,
                    lease_until=now + timedelta(seconds=lease_seconds),
                )
                .returning(*outbox.c)
            ).all()
        return sorted(map(message_from_row, claimed), key=lambda m: (m.next_attempt_at, m.id))

    @staticmethod
    def _take_back(conn: Connection, row: Any, now: datetime, max_attempts: int) -> bool:
        """Whether to claim `row`; records the lost attempt of a dead deliverer first."""
        if row.lease_holder is None:
            return True
        lost = DeliveryAttempt(row.attempts, now, 0, None, *LOST).as_json()
        values: dict[str, Any] = {"history": _history(row.history, lost), "lease_holder": None}
        if row.attempts >= max_attempts:
            values.update(status="failed", last_error=f"{LOST[0]}: {LOST[1]}", lease_until=None)
        conn.execute(outbox.update().where(outbox.c.id == row.id).values(**values))
        return bool(row.attempts < max_attempts)

    @staticmethod
    def _holding(msg: Message) -> sa.ColumnElement[bool]:
        return sa.and_(
            outbox.c.id == msg.id,
            outbox.c.status == "pending",
            outbox.c.lease_holder == msg.lease_holder,
            outbox.c.attempts == msg.attempts,
        )

    def message_delivered(self, msg: Message, attempt: DeliveryAttempt) -> bool:
        """Mark a claimed message delivered (False: the claim was lost meanwhile); its
        endpoint's failure streak ends. Transient store errors are retried: losing
        this write would send the message again."""
        return self._retrying(lambda: self._delivered(msg, attempt), f"message {msg.id}")

    def _delivered(self, msg: Message, attempt: DeliveryAttempt) -> bool:
        with self._tx(write=True) as conn:
            lock_endpoint(conn, msg)
            done = conn.execute(
                outbox.update()
                .where(self._holding(msg))
                .values(
                    status="delivered",
                    delivered_at=attempt.at,
                    lease_until=None,
                    lease_holder=None,
                    last_status_code=attempt.status_code,
                    last_error=None,
                    history=_history(msg.history, attempt.as_json()),
                )
            ).rowcount
            if done and msg.webhook_id and msg.channel == "webhook":
                conn.execute(
                    webhooks.update()
                    .where(webhooks.c.id == msg.webhook_id, webhooks.c.failing_since.is_not(None))
                    .values(failing_since=None)
                )
        return bool(done)

    def message_failed(
        self, msg: Message, attempt: DeliveryAttempt, retry_at: datetime | None
    ) -> datetime | None:
        """Record a failed attempt: try again at `retry_at`, or never (None). Returns
        since when the message's endpoint has been failing (None for other targets, or
        when the claim was lost). Transient store errors are retried."""
        return self._retrying(lambda: self._failed(msg, attempt, retry_at), f"message {msg.id}")

    def _failed(
        self, msg: Message, attempt: DeliveryAttempt, retry_at: datetime | None
    ) -> datetime | None:
        with self._tx(write=True) as conn:
            return self._failed_in(conn, msg, attempt, retry_at)

    def _failed_in(
        self, conn: Connection, msg: Message, attempt: DeliveryAttempt, retry_at: datetime | None
    ) -> datetime | None:
        error = f"{attempt.code}: {attempt.error}" if attempt.code else attempt.error
        lock_endpoint(conn, msg)
        done = conn.execute(
            outbox.update()
            .where(self._holding(msg))
            .values(
                status="pending" if retry_at is not None else "failed",
                next_attempt_at=retry_at or msg.next_attempt_at,
                lease_until=None,
                lease_holder=None,
                last_status_code=attempt.status_code,
                last_error=None if error is None else error[:1000],
                history=_history(msg.history, attempt.as_json()),
            )
        ).rowcount
        if not done or not msg.webhook_id or msg.channel != "webhook":
            return None
        since: datetime | None = conn.execute(
            webhooks.update()
            .where(webhooks.c.id == msg.webhook_id)
            .values(failing_since=sa.func.coalesce(webhooks.c.failing_since, attempt.at))
            .returning(webhooks.c.failing_since)
        ).scalar()
        return since

    # -- reading and redelivering ----------------------------------------------------

    def list_messages(
        self,
        owner: str | None,
        *,
        webhook_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Message], str | None]:
        """Newest first; returns the page and the cursor of the next one."""
        query = outbox.select().order_by(outbox.c.id.desc()).limit(limit + 1)
        for column, value in (
            (outbox.c.owner, owner),
            (outbox.c.webhook_id, webhook_id),
            (outbox.c.job_id, job_id),
            (outbox.c.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        if cursor:
            query = query.where(outbox.c.id < cursor)
        with self._tx() as conn:
            found = [message_from_row(row) for row in conn.execute(query)]
        more = len(found) > limit
        found = found[:limit]
        return found, (found[-1].id if more and found else None)

    def get_message(self, message_id: str, owner: str | None = None) -> Message | None:
        with self._tx() as conn:
            return self._message_in(conn, message_id, owner)

    def redeliver_message(self, message_id: str, owner: str | None = None) -> Message | None:
        """Queue the message again now, with the same id and a fresh retry schedule (its
        history stays). Raises `InvalidTransition` while an attempt is in flight or when
        its endpoint is disabled."""
        now = utcnow()
        with self._tx(write=True) as conn:
            found = self._message_in(conn, message_id, owner)
            if found is None:
                return None
            held = found.lease_until is not None and found.lease_until > now
            if found.status == "pending" and held:
                raise InvalidTransition("the message is being sent right now")
            if found.channel == "webhook" and found.webhook_id is not None:
                self._check_endpoint(conn, found.webhook_id)
            row = conn.execute(
                outbox.update()
                .where(outbox.c.id == message_id)
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    lease_holder=None,
                )
                .returning(*outbox.c)
            ).one()
            self._notify(conn, "outbox", {"count": 1})
        return message_from_row(row)

    @staticmethod
    def _message_in(conn: Connection, message_id: str, owner: str | None) -> Message | None:
        query = outbox.select().where(outbox.c.id == message_id)
        if owner is not None:
            query = query.where(outbox.c.owner == owner)
        row = conn.execute(query).first()
        return None if row is None else message_from_row(row)

    @staticmethod
    def _check_endpoint(conn: Connection, webhook_id: str) -> None:
        hook = conn.execute(
            sa.select(webhooks.c.disabled_at).where(webhooks.c.id == webhook_id)
        ).first()
        if hook is None:
            raise InvalidTransition("the message's webhook was deleted")
        if hook.disabled_at is not None:
            raise InvalidTransition("the message's webhook is disabled: enable it first")
