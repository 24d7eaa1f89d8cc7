"""Event fan-out: waking on changes (LISTEN/NOTIFY, SQLite polling, in-process) and
delivering job events to live subscribers (SSE)."""

from exportd.events.hub import EventHub, Subscription
from exportd.events.wakeup import Waker

__all__ = ["EventHub", "Subscription", "Waker"]
