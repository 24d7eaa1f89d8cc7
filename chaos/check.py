"""The check after a round, total-queue style: every job the harness created is accounted
for, from the store, the transition history, the execution log and the artifact folder.

Invariants (each must be 0):
- lost: created, but missing from the store or never terminal (the stuck ones included);
- stuck: queued or running after the drain;
- duplicated completions: completed twice in the store, or an export whose work was
  finished and then done again with no fault to explain why;
- corrupt artifacts: completed jobs whose files do not read back as their rows say
  (see `chaos.artifacts`);
- stray files: files in the artifact folder (`.partial/` included) that no artifact
  row references;
- unexplained failures: failed jobs whose failing attempt is not explained (and any
  cancelled job: nobody cancels);
- unexplained re-runs: an attempt that did not end the job (or an execution of one),
  not explained by a fault that touched it in the way it ended (see `chaos.explain`);
- repeated keys: a published key seen holding two different files, or the files of a
  completed attempt stored under keys that another claim of the same attempt number
  would have used (keys that do not name their claim);
- harness errors: requests the API refused as invalid, unreadable log lines — the
  harness's own faults, so that it never passes a round it did not run properly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.artifacts import check_files
from chaos.explain import SLACK, affecting, claim_of, describe, explained
from chaos.faults import Fault
from chaos.history import (
    TERMINAL,
    Claim,
    Execution,
    ExecutionLog,
    JobRow,
    Snapshot,
    claims_from,
)
from chaos.watch import KeyWatcher
from chaos.workload import JobRequest

INVARIANTS = (
    "lost",
    "stuck",
    "duplicated completions",
    "corrupt artifacts",
    "stray files",
    "unexplained failures",
    "unexplained re-runs",
    "repeated keys",
    "harness errors",
)
MAX_DETAILS = 40


@dataclass
class RoundRecord:
    """Everything a round left to check."""

    requests: list[JobRequest]
    created: dict[int, str]
    not_created: dict[int, str]
    rejected: dict[int, str]
    snapshot: Snapshot
    executions: ExecutionLog
    faults: list[Fault]
    pids: set[int]
    artifacts_root: Path
    watcher: KeyWatcher


@dataclass
class Verdict:
    figures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVARIANTS, 0))
    counts: dict[str, Any] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)

    def flag(self, invariant: str, detail: str) -> None:
        self.figures[invariant] += 1
        found = self.details.setdefault(invariant, [])
        if len(found) < MAX_DETAILS:
            found.append(detail)

    @property
    def passed(self) -> bool:
        return not any(self.figures.values())


def adopt(record: RoundRecord, verdict: Verdict) -> dict[int, str]:
    """The jobs created: answered requests, plus unanswered ones the store holds."""
    created = dict(record.created)
    by_key = {(j.owner, j.idempotency_key): j.id for j in record.snapshot.jobs.values()}
    adopted = 0
    for index in record.not_created:
        request = record.requests[index]
        job_id = by_key.get((request.owner, request.key))
        if job_id is not None:
            created[index] = job_id
            adopted += 1
    known = set(created.values())
    verdict.counts["jobs requested"] = len(record.requests)
    verdict.counts["jobs created"] = len(created)
    verdict.counts["created, answer lost (adopted)"] = adopted
    verdict.counts["not created (no answer)"] = len(record.not_created) - adopted
    verdict.counts["jobs in store not created by us"] = len(set(record.snapshot.jobs) - known)
    for index, answer in record.rejected.items():
        verdict.flag("harness errors", f"request {index} refused: {answer}")
    if record.executions.unreadable:
        verdict.figures["harness errors"] += record.executions.unreadable
        verdict.details.setdefault("harness errors", []).append(
            f"{record.executions.unreadable} unreadable execution-log lines"
        )
    return created


class JobCheck:
    """The checks of one created job; flags go to the verdict."""

    def __init__(self, record: RoundRecord, verdict: Verdict, claims: dict[str, list[Claim]]):
        self.record = record
        self.verdict = verdict
        self.claims = claims
        self.faults = [f for f in record.faults if f.skipped is None]

    def run(self, job_id: str) -> None:
        job = self.record.snapshot.jobs.get(job_id)
        if job is None:
            self.verdict.flag("lost", f"{job_id}: created, missing from the store")
            return
        if job.status not in TERMINAL:
            self.verdict.flag("lost", f"{job_id}: still {job.status} after the drain")
            self.verdict.flag("stuck", f"{job_id}: {job.status}, attempt {job.attempt}")
        claims = self.claims.get(job_id, [])
        executions = self.record.executions.executions.get(job_id, [])
        self._reruns(job, claims, executions)
        if job.status == "completed":
            self._completed(job, claims)
        elif job.status in ("failed", "cancelled"):
            self._failed(job, claims)

    def _explained(self, claim: Claim) -> list[Fault]:
        return explained(claim, self.faults)

    def _reruns(self, job: JobRow, claims: list[Claim], executions: list[Execution]) -> None:
        """Every claim but the last one made the job run again; so did every execution
        of those claims. (The last claim is judged by how the job ended.)"""
        earlier = claims[:-1]
        if earlier or len(executions) > 1 or job.attempt > 1:
            self.verdict.counts["re-runs"] = self.verdict.counts.get("re-runs", 0) + 1
        for claim in earlier:
            if not self._explained(claim):
                self.verdict.flag("unexplained re-runs", f"{job.id}: {describe(claim)}")
        for execution in executions:
            claim = claim_of(execution, claims)
            where = f"attempt {execution.attempt} in pid {execution.pid}"
            if claim is None:
                self.verdict.flag(
                    "unexplained re-runs", f"{job.id}: {where} ran without a committed claim"
                )
            elif claim in earlier and execution.finished and not self._explained(claim):
                self.verdict.flag(
                    "duplicated completions",
                    f"{job.id}: {where} finished its export at {execution.finished:.2f}, "
                    f"then the job ran again ({describe(claim)})",
                )

    def _completed(self, job: JobRow, claims: list[Claim]) -> None:
        completions = sum(1 for c in claims if c.outcome == "completed")
        events = self.record.snapshot.completed_events.get(job.id, 0)
        if completions > 1 or events > 1:
            self.verdict.flag(
                "duplicated completions",
                f"{job.id}: completed {completions} times, {events} completed events",
            )
        rows = self.record.snapshot.artifacts.get(job.id, [])
        problems = check_files(job, rows, self.record.artifacts_root).problems
        if problems:
            self.verdict.flag("corrupt artifacts", f"{job.id} ({job.format}): {problems[:3]}")
        final = next((c for c in reversed(claims) if c.outcome == "completed"), None)
        if final is not None:
            self._keys_name_claim(job, final, claims, rows)

    def _keys_name_claim(self, job: JobRow, final: Claim, claims: list[Claim], rows: list) -> None:
        siblings = [c for c in claims if c is not final and c.attempt == final.attempt]
        if not siblings or not rows:
            return
        prefixes = {row.storage_key.rsplit("/", 1)[0] for row in rows}
        for sibling in siblings:
            marks = _distinguishing(final.row, sibling.row)
            if not all(any(mark in prefix for mark in marks) for prefix in prefixes):
                self.verdict.flag(
                    "repeated keys",
                    f"{job.id}: attempt {final.attempt} was claimed twice (a release); the "
                    f"completed claim's keys {sorted(prefixes)} name nothing that tells the "
                    "two claims apart, so both wrote under the same keys",
                )
                return

    def _failed(self, job: JobRow, claims: list[Claim]) -> None:
        what = f"{job.id}: {job.status} ({job.error_code}: {(job.error_message or '')[:160]})"
        if job.status == "cancelled":
            self.verdict.flag("unexplained failures", f"{what}; nobody cancelled it")
            return
        last = claims[-1] if claims else None
        if last is None:
            self.verdict.flag("unexplained failures", f"{what}; never claimed")
        elif not self._explained(last):
            self.verdict.flag("unexplained failures", f"{what}; {describe(last)}, no fault")


def _distinguishing(row: dict[str, Any], other: dict[str, Any]) -> set[str]:
    """Pieces (8+ characters) of the text values that differ between two claim rows."""
    marks = set()
    for name, value in row.items():
        if isinstance(value, str) and value != other.get(name):
            marks |= {piece for piece in re.split(r"[/:. ]", value) if len(piece) >= 8}
    return marks


def _stray_detail(
    key: str, mtime: float, record: RoundRecord, claims: dict[str, list[Claim]]
) -> str:
    """A stray file with the job its name holds, the claim under which it was last
    written (the latest one begun by then) and the faults that touched that claim."""
    job = next((j for j in record.snapshot.jobs.values() if j.id in key), None)
    if job is None:
        return key
    text = f"{key} (job {job.status}, attempt {job.attempt}"
    begun = [c for c in claims.get(job.id, []) if c.start - SLACK <= mtime]
    if begun:
        claim = begun[-1]
        end = claim.end if claim.end is not None else math.inf
        kinds = sorted({f.kind for f in affecting(record.faults, claim.pid, claim.start, end)})
        text += f"; written in attempt {claim.attempt}, touched by {kinds or 'no fault'}"
        if mtime > end + SLACK:
            text += ", after that claim had ended"
    return text + ")"


def stray_files(root: Path, referenced: set[str]) -> list[tuple[str, float]]:
    """Files under the artifact folder (partials included) that no artifact row names,
    with their mtimes."""
    stray = []
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, root).replace(os.sep, "/")
            if key not in referenced:
                stray.append((key, os.stat(path).st_mtime))
    return sorted(stray)


def check(record: RoundRecord) -> Verdict:
    verdict = Verdict()
    created = adopt(record, verdict)
    claims = claims_from(record.snapshot.transitions, record.pids)
    job_check = JobCheck(record, verdict, claims)
    verdict.counts["re-runs"] = 0
    for job_id in created.values():
        try:
            job_check.run(job_id)
        except Exception as exc:  # a checker bug must fail the round, visibly
            verdict.flag("harness errors", f"{job_id}: the check crashed: {exc!r}")
    statuses = [j.status for j in record.snapshot.jobs.values()]
    for status in TERMINAL:
        verdict.counts[f"jobs {status}"] = statuses.count(status)
    referenced = {r.storage_key for rows in record.snapshot.artifacts.values() for r in rows}
    stray = stray_files(record.artifacts_root, referenced)
    partials = [(k, t) for k, t in stray if k.startswith(".partial/")]
    published = [(k, t) for k, t in stray if not k.startswith(".partial/")]
    verdict.counts["stray files: partials / published"] = f"{len(partials)} / {len(published)}"
    for key, mtime in published + partials:  # published first: nothing ever sweeps them
        verdict.flag("stray files", _stray_detail(key, mtime, record, claims))
    for key, how in sorted(record.watcher.republished.items()):
        verdict.flag("repeated keys", f"{key}: {how}")
    runs = record.executions.executions.values()
    verdict.counts["executions logged"] = sum(len(e) for e in runs)
    verdict.counts["published files deleted later"] = record.watcher.deleted
    return verdict
