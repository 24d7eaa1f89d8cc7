"""API tokens and batches: the rows the HTTP layer needs besides jobs (same SQL owner:
`SqlJobStore` mixes this in)."""

from __future__ import annotations

import hashlib
import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.errors import JobNotFound
from exportd.jobs import new_id, utcnow
from exportd.store.schema import batches, tokens

TOKEN_PREFIX = "exd_"
AUTH_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Token:
    id: str
    owner: str
    name: str | None
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Batch:
    id: str
    owner: str
    size: int
    created_at: datetime


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: Any) -> Token:
    return Token(row.id, row.owner, row.name, bool(row.admin), row.created_at, row.revoked_at)


class _Transactional(Protocol):
    def _tx(self, write: bool = False) -> AbstractContextManager[Connection]: ...

    def _lookup_token(self, digest: str) -> Token | None: ...

    def cached_token(self, secret: str) -> tuple[bool, Token | None]: ...


class TokenStoreMixin:
    def create_token(
        self: _Transactional, owner: str, *, admin: bool = False, name: str | None = None
    ) -> tuple[Token, str]:
        """A new token; the secret is returned once and only its hash is stored."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = Token(new_id(), owner, name, admin, utcnow(), None)
        with self._tx(write=True) as conn:
            conn.execute(tokens.insert().values(hash=hash_token(secret), **token.__dict__))
        return token, secret

    def cached_token(self: _Transactional, secret: str) -> tuple[bool, Token | None]:
        """What `authenticate` would answer from its cache alone, without the database:
        (True, the token or None when it is known not to be valid), or (False, None)
        when the cache cannot tell. Lets an event loop skip a thread hop."""
        cache: dict[str, tuple[float, Token | None]] | None = self.__dict__.get("_auth_cache")
        hit = cache.get(hash_token(secret)) if cache is not None else None
        if hit is None or hit[0] <= time.monotonic():
            return False, None
        return True, hit[1]

    def authenticate(self: _Transactional, secret: str) -> Token | None:
        """The active token with this secret. Cached for `AUTH_CACHE_SECONDS`: a token
        revoked through this store stops working at once, through another process
        within that time."""
        known, token = self.cached_token(secret)
        if known:
            return token
        digest = hash_token(secret)
        cache: dict[str, tuple[float, Token | None]] = self.__dict__.setdefault("_auth_cache", {})
        token = self._lookup_token(digest)
        if len(cache) > 10_000:
            cache.clear()
        cache[digest] = (time.monotonic() + AUTH_CACHE_SECONDS, token)
        return token

    def _lookup_token(self: _Transactional, digest: str) -> Token | None:
        with self._tx() as conn:
            row = conn.execute(
                tokens.select().where(tokens.c.hash == digest, tokens.c.revoked_at.is_(None))
            ).first()
        return None if row is None else _token(row)

    def list_tokens(self: _Transactional, owner: str | None = None) -> list[Token]:
        query = tokens.select().order_by(tokens.c.id)
        if owner is not None:
            query = query.where(tokens.c.owner == owner)
        with self._tx() as conn:
            return [_token(row) for row in conn.execute(query)]

    def revoke_token(self: _Transactional, token_id: str) -> Token:
        self.__dict__.pop("_auth_cache", None)
        with self._tx(write=True) as conn:
            conn.execute(
                tokens.update()
                .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            row = conn.execute(tokens.select().where(tokens.c.id == token_id)).first()
        if row is None:
            raise JobNotFound(f"no token {token_id}")
        return _token(row)

    def has_admin_token(self: _Transactional) -> bool:
        with self._tx() as conn:
            query = sa.select(tokens.c.id).where(tokens.c.admin, tokens.c.revoked_at.is_(None))
            return conn.execute(query.limit(1)).first() is not None

    def add_batch(self: _Transactional, conn: Connection, owner: str, size: int) -> Batch:
        batch = Batch(new_id(), owner, size, utcnow())
        conn.execute(batches.insert().values(**batch.__dict__))
        return batch

    def get_batch(self: _Transactional, batch_id: str, owner: str | None = None) -> Batch:
        query = batches.select().where(batches.c.id == batch_id)
        if owner is not None:
            query = query.where(batches.c.owner == owner)
        with self._tx() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise JobNotFound(batch_id)
        return Batch(row.id, row.owner, row.size, row.created_at)
