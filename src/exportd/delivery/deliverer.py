"""`Deliverer`: sends the outbox. Runs in every `exportd worker` and in `exportd serve`
(with or without `--no-workers`), so some process delivers in every deployment shape;
any number may run at once.

Threads: one claim loop and `concurrency` sender threads. The loop sleeps until the
next message is due, or until poked — by this process's own store when it writes a
message, by PostgreSQL `LISTEN exportd_outbox`, by SQLite's change counter — and polls
as a fallback. It claims at most as many messages as there are idle senders; the
claim's lease keeps other deliverers off them, and runs out if this process dies.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable

from exportd.delivery.dispatch import Dispatcher
from exportd.events.wakeup import Waker
from exportd.jobs import utcnow
from exportd.store.deliveries import Message

log = logging.getLogger(__name__)

ERROR_PAUSE_SECONDS = 1.0


class Deliverer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        holder: str,
        concurrency: int = 8,
        lease_seconds: float = 120.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.dispatcher = dispatcher
        self.store = dispatcher.store
        self.holder = holder
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.waker = Waker(poll_interval, channel="outbox")
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._idle_senders = concurrency
        self._ready: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.waker.watch(self.store)
        for index in range(self.concurrency):
            self._threads.append(self._spawn(self._send_loop, f"sender-{index}"))
        self._loop_thread = self._spawn(self._claim_loop, "deliverer")
        log.info("deliverer %s started with %d senders", self.holder, self.concurrency)

    @staticmethod
    def _spawn(target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"exportd-{name}", daemon=True)
        thread.start()
        return thread

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give messages being sent `grace` seconds. One still sending
        after that keeps its lease until it runs out (then any deliverer sends it)."""
        self._stopping.set()
        self.waker.poke()
        with self._idle:
            self._idle.notify_all()
        self._loop_thread.join()
        for _ in self._threads:
            self._ready.put(None)
        per_thread = grace / max(1, len(self._threads))
        for thread in self._threads:
            thread.join(timeout=per_thread)
        self.waker.close()
        self.dispatcher.close()

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            with self._idle:
                if self._idle_senders < 1:
                    self._idle.wait(0.5)
                    continue
                wanted = self._idle_senders
            try:
                claimed = self._claim(wanted)
            except Exception:
                log.warning("claiming messages failed; trying again", exc_info=True)
                self.waker.wait(ERROR_PAUSE_SECONDS * random.uniform(0.5, 1.5))
                continue
            with self._idle:
                self._idle_senders -= len(claimed)
            for msg in claimed:
                self._ready.put(msg)

    def _claim(self, wanted: int) -> list[Message]:
        """Messages due now, or [] after waiting for the next one to be due (at most a
        poll interval, less when poked)."""
        due = self.store.next_message_due()
        now = utcnow()
        if due is None or due > now:
            until = None if due is None else (due - now).total_seconds()
            poll = self.waker.poll_interval * random.uniform(0.5, 1.5)
            self.waker.wait(poll if until is None else max(0.005, min(poll, until)))
            return []
        claimed = self.store.claim_messages(
            self.holder,
            wanted,
            lease_seconds=self.lease_seconds,
            max_attempts=self.dispatcher.schedule.max_attempts,
        )
        if not claimed:  # others took them: wait for news
            self.waker.wait()
        return claimed

    def _send_loop(self) -> None:
        while (msg := self._ready.get()) is not None:
            try:
                self.dispatcher.handle(msg)
            except Exception:  # recording failed: the lease runs out, the message is retried
                log.warning("message %s: recording the attempt failed", msg.id, exc_info=True)
            finally:
                with self._idle:
                    self._idle_senders += 1
                    self._idle.notify()
                self.waker.poke()
