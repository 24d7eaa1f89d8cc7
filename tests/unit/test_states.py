"""The lifecycle: which status changes are allowed."""

from __future__ import annotations

import pytest

from exportd.errors import InvalidTransition
from exportd.jobs import Status, can_transition, check_transition

ALLOWED = {
    (Status.QUEUED, Status.RUNNING),
    (Status.QUEUED, Status.CANCELLED),
    (Status.RUNNING, Status.COMPLETED),
    (Status.RUNNING, Status.FAILED),
    (Status.RUNNING, Status.CANCELLED),
    (Status.RUNNING, Status.QUEUED),
    (Status.FAILED, Status.QUEUED),
    (Status.CANCELLED, Status.QUEUED),
}


@pytest.mark.parametrize("current", list(Status))
@pytest.mark.parametrize("target", list(Status))
def test_transition_table(current: Status, target: Status) -> None:
    """Exactly the lifecycle's arrows are allowed; every other change raises."""
    if (current, target) in ALLOWED:
        check_transition(current, target)
        assert can_transition(current, target)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(current, target)


def test_terminal_statuses() -> None:
    """Completed, failed and cancelled are terminal; queued and running are not."""
    assert {s for s in Status if s.terminal} == {
        Status.COMPLETED,
        Status.FAILED,
        Status.CANCELLED,
    }
