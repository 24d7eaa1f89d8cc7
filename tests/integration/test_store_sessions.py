"""Web sessions in the job store, on real SQLite and PostgreSQL: hashed, expiring, ended
by signing out and by revoking their token."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from exportd.jobs import utcnow
from exportd.store import SqlJobStore
from exportd.store.schema import web_sessions
from exportd.store.tokens import hash_token

HOUR = timedelta(hours=1)


def test_a_session_carries_its_tokens_owner_and_stores_only_a_hash(store: SqlJobStore) -> None:
    """The secret finds the session with the token's owner and admin flag; the table
    holds its sha256, never the secret."""
    token, _ = store.create_token("alice", admin=True)
    session, secret = store.create_session(token, ttl=HOUR)
    found = store.find_session(secret)
    assert found == session
    assert (found.owner, found.admin, found.token_id) == ("alice", True, token.id)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(web_sessions.c.hash)).scalars().all()
    assert stored == [hash_token(secret)]
    assert store.find_session(secret + "x") is None


def test_ending_a_session_deletes_it(store: SqlJobStore) -> None:
    """Signing out deletes the row: the secret stops working; ending it twice is a no-op."""
    token, _ = store.create_token("alice")
    _, secret = store.create_session(token, ttl=HOUR)
    _, other = store.create_session(token, ttl=HOUR)
    assert store.end_session(secret) is True
    assert store.find_session(secret) is None
    assert store.end_session(secret) is False
    assert store.find_session(other) is not None


def test_revoking_the_token_ends_its_sessions(store: SqlJobStore) -> None:
    """A session is only as good as its token: revoked, every session of it is invalid."""
    token, _ = store.create_token("alice")
    _, secret = store.create_session(token, ttl=HOUR)
    store.revoke_token(token.id)
    assert store.find_session(secret) is None


def test_expired_sessions_are_invalid_and_pruned(store: SqlJobStore) -> None:
    """A session past its expiry is refused, and the next sign-in removes its row."""
    token, _ = store.create_token("alice")
    _, secret = store.create_session(token, ttl=HOUR)
    with store.engine.begin() as conn:
        conn.execute(web_sessions.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert store.find_session(secret) is None
    store.create_session(token, ttl=HOUR)
    with store.engine.connect() as conn:
        hashes = conn.execute(sa.select(web_sessions.c.hash)).scalars().all()
    assert hash_token(secret) not in hashes and len(hashes) == 1


def test_a_session_needs_a_positive_lifetime(store: SqlJobStore) -> None:
    """A zero lifetime is a programming error, refused before anything is stored."""
    token, _ = store.create_token("alice")
    with pytest.raises(ValueError, match="positive"):
        store.create_session(token, ttl=timedelta(0))
