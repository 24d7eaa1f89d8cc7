"""What explains an attempt that did not end its job: a fault that touched it, of a
kind that can end an attempt the way this one ended (`causes`).

- a lost lease (`worker_lost`): a SIGKILL, SIGSTOP or SIGTERM of the process that held
  it while it held it, or a PostgreSQL restart while it ran;
- a release (a graceful shutdown gives the job back): a SIGTERM of that process;
- an error saying the disk is full: a full disk while it ran;
- any other error: a PostgreSQL restart while it ran (a deadlock, for one, is never
  explained by a fault: it is exportd's own).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

from chaos.faults import Fault
from chaos.history import Claim, Execution

SLACK = 0.5
"""Seconds of tolerance between the harness's clock and the database's."""
PROCESS_FAULTS = ("sigkill", "sigstop", "sigterm")
DISK_FULL_SIGNS = ("no space left", "errno 28", "enospc")


def affecting(faults: Iterable[Fault], pid: int | None, start: float, end: float) -> list[Fault]:
    """The injected faults that touched an attempt held by `pid` over [start, end]."""
    hits = []
    for fault in faults:
        if fault.skipped is not None:
            continue
        if fault.kind in PROCESS_FAULTS and fault.pid != pid:
            continue
        if fault.started <= end + SLACK and fault.ended >= start - SLACK:
            hits.append(fault)
    return hits


def causes(claim: Claim) -> tuple[str, ...]:
    """The fault kinds that can end a claim the way it ended."""
    if claim.released:
        return ("sigterm",)
    if claim.error_code == "worker_lost":
        return (*PROCESS_FAULTS, "pg_restart")
    message = (claim.error_message or "").lower()
    if any(sign in message for sign in DISK_FULL_SIGNS):
        return ("disk_full",)
    return ("pg_restart",)


def explained(claim: Claim, faults: Iterable[Fault]) -> list[Fault]:
    """The faults that explain how the claim ended (none: it is unexplained)."""
    end = claim.end if claim.end is not None else math.inf
    able = [f for f in faults if f.kind in causes(claim)]
    return affecting(able, claim.pid, claim.start, end)


def claim_of(execution: Execution, claims: list[Claim]) -> Claim | None:
    """The claim an execution ran under: same attempt, same process (or, when the
    holder's pid is unknown, the claim that was open when it started)."""
    same = [c for c in claims if c.attempt == execution.attempt]
    for claim in same:
        if claim.pid == execution.pid:
            return claim
    for claim in same:
        end = claim.end if claim.end is not None else math.inf
        if claim.pid is None and claim.start - SLACK <= execution.started <= end + SLACK:
            return claim
    return None


def lease_at_claim(claim: Claim) -> float | None:
    """Seconds of lease the claim had when it was written (its `lease_expires_at` against
    the database clock at the claim), if the row says."""
    value = claim.row.get("lease_expires_at")
    if not isinstance(value, str):
        return None
    try:
        expires = datetime.fromisoformat(value)
    except ValueError:
        return None
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    return expires.timestamp() - claim.start


def describe(claim: Claim) -> str:
    """A claim in one line, for the report."""
    ended = f"ended {claim.outcome}" if claim.outcome else "never ended"
    code = f" ({claim.error_code}: {(claim.error_message or '')[:120]})" if claim.error_code else ""
    released = " by a release" if claim.released else ""
    lease = lease_at_claim(claim)
    leased = f" with {lease:.1f} s of lease" if lease is not None else ""
    return (
        f"attempt {claim.attempt} held by pid {claim.pid} from {claim.start:.2f}{leased} "
        f"{ended}{released}{code} at {claim.end or 0:.2f}"
    )
