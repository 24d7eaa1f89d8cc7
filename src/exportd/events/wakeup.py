"""Waking idle workers when there may be work, without hammering the database.

`Waker.wait` returns when poked or after a jittered poll interval, whichever comes first.
Pokes come from this process's own store (in-process), from PostgreSQL `LISTEN` on
another thread, or on SQLite from a cheap `PRAGMA data_version` check that changes when
another process commits. The poll is the fallback: a dead listener delays pickup by at
most one interval, it never stalls it.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from typing import Any

from exportd.store import PostgresJobStore, SqliteJobStore, SqlJobStore
from exportd.store.postgres import CHANNELS

log = logging.getLogger(__name__)

SQLITE_CHECK_SECONDS = 0.02
RECONNECT_SECONDS = 0.5
"""First delay before a lost LISTEN connection is opened again (doubling up to 30 s)."""


class Waker:
    """Pokes on changes to one channel: `jobs` (work to claim) or `events` (new events)."""

    def __init__(self, poll_interval: float, channel: str = "jobs") -> None:
        self.poll_interval = poll_interval
        self.channel = channel
        self._event = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def poke(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a poke or the jittered poll interval; True if poked."""
        if timeout is None:
            timeout = self.poll_interval * random.uniform(0.5, 1.5)
        poked = self._event.wait(timeout)
        self._event.clear()
        return poked

    def watch(self, store: SqlJobStore) -> None:
        """Start the cross-process listener that fits the store."""
        store.add_listener(self._on_local_change)
        if isinstance(store, PostgresJobStore):
            self._spawn(self._listen_postgres, store.raw_dsn())
        elif isinstance(store, SqliteJobStore) and store.engine.url.database:
            self._watch_sqlite_from_now(store.engine.url.database)

    def close(self) -> None:
        self._closed.set()
        self.poke()
        for thread in self._threads:
            thread.join(timeout=2)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="waker", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _on_local_change(self, channel: str, payload: dict[str, Any]) -> None:
        if channel == self.channel:
            self.poke()

    def _listen_postgres(self, dsn: str) -> None:
        import psycopg

        failures = 0
        while not self._closed.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNELS[self.channel]}")
                    failures = 0
                    self.poke()  # anything queued while we were not listening
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.poke()
                            break
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                delay = min(RECONNECT_SECONDS * 2**failures, 30.0)
                self._closed.wait(delay * random.uniform(0.5, 1.5))
                failures += 1

    def _watch_sqlite_from_now(self, path: str) -> None:
        """Read the baseline `data_version` before returning, so a commit made after
        `watch()` returns is always seen as a change (the caller claims after this)."""
        try:
            conn = sqlite3.connect(path, check_same_thread=False)
            baseline = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            log.warning("cannot watch %s (%s); polling only", path, exc)
            return
        self._spawn(self._watch_sqlite, conn, baseline)

    def _watch_sqlite(self, conn: sqlite3.Connection, last: int) -> None:
        try:
            while not self._closed.wait(SQLITE_CHECK_SECONDS):
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    self.poke()
                last = version
        except sqlite3.Error as exc:
            log.warning("SQLite change watch stopped (%s); polling only", exc)
        finally:
            conn.close()
