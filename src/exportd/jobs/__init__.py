"""The domain: jobs, their states and transitions, errors and the retry policy. No I/O."""

from exportd.jobs.model import (
    Artifact,
    Claim,
    Event,
    Job,
    JobError,
    NewJob,
    Progress,
    new_claim_id,
    new_id,
    utcnow,
)
from exportd.jobs.retry import ErrorInfo, RetryPolicy, classify
from exportd.jobs.states import TERMINAL, Status, can_transition, check_transition

__all__ = [
    "TERMINAL",
    "Artifact",
    "Claim",
    "ErrorInfo",
    "Event",
    "Job",
    "JobError",
    "NewJob",
    "Progress",
    "RetryPolicy",
    "Status",
    "can_transition",
    "check_transition",
    "classify",
    "new_claim_id",
    "new_id",
    "utcnow",
]
