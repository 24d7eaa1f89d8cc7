"""The job lifecycle: statuses and the transitions between them (no I/O)."""

from __future__ import annotations

from enum import StrEnum

from exportd.errors import InvalidTransition


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    # claim, or cancel before it ran
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    # finish; or back to the queue for a retry, a rescue or a release on shutdown
    Status.RUNNING: frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.QUEUED}),
    # an explicit retry starts a new attempt series
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
    Status.COMPLETED: frozenset(),
}


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: Status, target: Status) -> None:
    """Raise `InvalidTransition` unless the lifecycle allows `current -> target`."""
    if not can_transition(current, target):
        raise InvalidTransition(f"a {current} job cannot become {target}")
