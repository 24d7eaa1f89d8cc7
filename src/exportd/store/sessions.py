"""Web sessions: what a browser holds instead of an API token (same SQL owner:
`SqlJobStore` mixes this in).

A session is created by signing in with an API token. The browser gets a random secret
(its cookie); the store keeps only the secret's sha256, the token it was obtained with
and an expiry. A session is valid while it has not expired, has not been ended (signing
out deletes the row) and its token has not been revoked (checked on every look-up, so
revoking a token ends its sessions at once, in every process)."""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.jobs import utcnow
from exportd.store.schema import tokens, web_sessions
from exportd.store.tokens import Token, hash_token

SESSION_PREFIX = "exs_"
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class WebSession:
    """A valid session and what it may do: its token's owner and admin flag."""

    token_id: str
    owner: str
    admin: bool
    created_at: datetime
    expires_at: datetime
    token_name: str | None = None

    @property
    def actor(self) -> str:
        """Who acts through this session, for history and audit (as for the token)."""
        return f"{self.owner}/{self.token_name or self.token_id}"


class _Transactional(Protocol):
    def _tx(self, write: bool = False) -> AbstractContextManager[Connection]: ...


class SessionStore:
    def create_session(
        self: _Transactional, token: Token, *, ttl: timedelta
    ) -> tuple[WebSession, str]:
        """A new session for `token`, valid for `ttl`; the secret is returned once and
        only its hash is stored. Expired sessions are pruned on the way (a bounded batch)."""
        if ttl <= timedelta(0):
            raise ValueError("a session needs a positive lifetime")
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        session = WebSession(token.id, token.owner, token.admin, now, now + ttl, token.name)
        with self._tx(write=True) as conn:
            _prune_expired(conn, now)
            conn.execute(
                web_sessions.insert().values(
                    hash=hash_token(secret),
                    token_id=token.id,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                )
            )
        return session, secret

    def find_session(self: _Transactional, secret: str) -> WebSession | None:
        """The session with this secret, if it has not expired, ended or lost its token."""
        query = (
            sa.select(
                web_sessions.c.token_id,
                web_sessions.c.created_at,
                web_sessions.c.expires_at,
                tokens.c.owner,
                tokens.c.admin,
                tokens.c.name,
            )
            .join(tokens, tokens.c.id == web_sessions.c.token_id)
            .where(
                web_sessions.c.hash == hash_token(secret),
                web_sessions.c.expires_at > utcnow(),
                tokens.c.revoked_at.is_(None),
            )
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return WebSession(
            row.token_id, row.owner, bool(row.admin), row.created_at, row.expires_at, row.name
        )

    def end_session(self: _Transactional, secret: str) -> bool:
        """Delete the session with this secret; False if there was none."""
        with self._tx(write=True) as conn:
            deleted = conn.execute(
                web_sessions.delete().where(web_sessions.c.hash == hash_token(secret))
            ).rowcount
        return bool(deleted)


def _prune_expired(conn: Connection, now: datetime) -> None:
    expired = (
        sa.select(web_sessions.c.hash).where(web_sessions.c.expires_at <= now).limit(PRUNE_BATCH)
    )
    conn.execute(web_sessions.delete().where(web_sessions.c.hash.in_(expired.scalar_subquery())))
