"""`RetrySchedule`: when a message that failed is tried again (no I/O).

The delays follow the failed attempt: after the first failure the first delay, and so
on; once every delay is used the message has failed for good. Each delay is jittered by
±`jitter` so that a receiver coming back is not hit by every sender at the same moment,
and a receiver's `Retry-After` (seconds or an HTTP date) wins when it asks for longer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about 27 hours."""

MAX_RETRY_AFTER_SECONDS = 86400.0
"""A receiver cannot push a retry further out than a day."""


@dataclass(frozen=True)
class RetrySchedule:
    delays: Sequence[float] = DEFAULT_DELAYS
    jitter: float = 0.15

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay(
        self, attempts: int, retry_after: float | None = None, rand: random.Random | None = None
    ) -> float | None:
        """Seconds until the next try after `attempts` failed attempts (None: give up)."""
        if attempts < 1 or attempts > len(self.delays):
            return None
        spread = (rand or random).uniform(1 - self.jitter, 1 + self.jitter)
        planned = self.delays[attempts - 1] * spread
        if retry_after is not None:
            return max(planned, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return planned


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a `Retry-After` header asks for: a number of seconds or an HTTP date
    (None when absent or unreadable; never negative)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
