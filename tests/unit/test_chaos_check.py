"""The chaos check's judgement on made-up histories: what it counts as explained, what it
flags, and that it never blames exportd for the harness's own gaps."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from chaos.artifacts import parse
from chaos.check import RoundRecord, Verdict, check
from chaos.explain import affecting, lease_at_claim
from chaos.faults import Fault
from chaos.history import (
    ArtifactRow,
    Execution,
    ExecutionLog,
    JobRow,
    Snapshot,
    Transition,
    claims_from,
    holder_pid,
)
from chaos.watch import KeyWatcher
from chaos.workload import JobRequest

from exportd.formats import COMPRESSIONS, FORMATS, HashingSink, Stream
from support.exporters import slow_batch

PID_A, PID_B = 4101, 4202
NOWHERE = Path("/nonexistent-chaos-artifacts")


def holder(pid: int, token: str = "tok") -> str:
    return f"host:{pid}:ab12/{token}0000000000"


def job_row(job_id: str, status: str, attempt: int = 1, **extra: Any) -> JobRow:
    values: dict[str, Any] = dict(
        id=job_id, owner="o", exporter="chaos", status=status, attempt=attempt,
        max_attempts=3, error_code=None, error_message=None,
        params={"batches": 1, "rows_per_batch": 1, "delay": 0}, format="csv",
        compression="none", options={}, idempotency_key="chaos-0",
    )  # fmt: skip
    values.update(extra)
    return JobRow(**values)


def claim(job_id: str, attempt: int, pid: int, at: float, old: str = "queued") -> Transition:
    lease = holder(pid, f"t{attempt}{pid}")
    return Transition(
        job_id, attempt, "running", old, lease, None, None, at, {"lease_owner": lease}
    )


def end(
    job_id: str, attempt: int, status: str, at: float, code: str | None = None, message: str = ""
) -> Transition:
    return Transition(
        job_id, attempt, status, "running", None, "x", code, at, {"error_message": message}
    )


def round_record(
    jobs: list[JobRow],
    transitions: list[Transition],
    faults: list[Fault] = (),  # type: ignore[assignment]
    executions: dict[str, list[Execution]] | None = None,
) -> RoundRecord:
    return RoundRecord(
        requests=[JobRequest(i, "o", {}) for i in range(len(jobs))],
        created={i: job.id for i, job in enumerate(jobs)},
        not_created={},
        rejected={},
        snapshot=Snapshot({j.id: j for j in jobs}, {}, Counter(), transitions),
        executions=ExecutionLog(executions or {}),
        faults=list(faults),
        pids={PID_A, PID_B},
        artifacts_root=NOWHERE,
        watcher=KeyWatcher(NOWHERE),
    )


def kill(pid: int, at: float) -> Fault:
    return Fault("sigkill", f"worker {pid}", at, at, pid=pid)


def rerun_then_fail(*faults: Fault) -> Verdict:
    """A job killed in attempt 1 (held by A over 10..14), failed for good in attempt 2."""
    job = job_row("j", "failed", attempt=2, error_code="worker_lost")
    history = [
        claim("j", 1, PID_A, 10.0),
        end("j", 1, "queued", 14.0, "worker_lost"),
        claim("j", 2, PID_B, 15.0),
        end("j", 2, "failed", 20.0, "worker_lost"),
    ]
    return check(round_record([job], history, list(faults)))


def test_a_fault_explains_only_the_attempts_it_touched() -> None:
    """A kill explains an attempt of the killed pid while it held it; a database restart
    explains any attempt it overlapped; skipped faults explain nothing."""
    restart = Fault("pg_restart", "postgres", 30.0, 31.0)
    skipped = Fault("pg_restart", "-", 12.0, 12.0, skipped="no PostgreSQL")
    assert affecting([kill(PID_A, 12.0)], PID_A, 10.0, 14.0)
    assert not affecting([kill(PID_B, 12.0)], PID_A, 10.0, 14.0)
    assert not affecting([kill(PID_A, 20.0)], PID_A, 10.0, 14.0)
    assert affecting([restart], PID_B, 29.0, 30.2)
    assert not affecting([restart], PID_B, 20.0, 25.0)
    assert not affecting([skipped], PID_A, 10.0, 14.0)


def test_claims_are_rebuilt_from_transitions_with_their_ends() -> None:
    """Each claim runs from its transition to running until the next one; a release is
    the job queued again with its attempt uncounted."""
    history = [
        claim("j", 1, PID_A, 1.0),
        Transition("j", 0, "queued", "running", None, holder(PID_A), None, 2.0, {}),
        claim("j", 1, PID_B, 3.0),
        end("j", 1, "completed", 4.0),
    ]
    first, second = claims_from(history, {PID_A, PID_B})["j"]
    assert (first.pid, first.end, first.outcome, first.released) == (PID_A, 2.0, "queued", True)
    assert (second.pid, second.outcome, second.released) == (PID_B, "completed", False)


def test_the_lease_a_claim_got_is_read_from_its_row() -> None:
    """A claim written at t=100 with a lease to t=100.9 had 0.9 s of lease (both
    databases' spellings of the timestamp)."""
    for spelled in ("1970-01-01T00:01:40.9+00:00", "1970-01-01 00:01:40.900000"):
        (found,) = claims_from([claim("j", 1, PID_A, 100.0)], {PID_A})["j"]
        found.row["lease_expires_at"] = spelled
        assert lease_at_claim(found) == pytest.approx(0.9)


def test_holder_pid_reads_only_known_pids() -> None:
    """The pid is taken from the lease holder only if it is one of the round's workers."""
    assert holder_pid(holder(PID_A), {PID_A}) == PID_A
    assert holder_pid(holder(PID_A), {PID_B}) is None


def test_a_rerun_and_a_failure_caused_by_kills_are_explained() -> None:
    """Killed in both attempts: the re-run and the failure are the faults' doing."""
    verdict = rerun_then_fail(kill(PID_A, 12.0), kill(PID_B, 16.0))
    assert verdict.passed, verdict.details
    assert verdict.counts["re-runs"] == 1


def test_a_rerun_and_a_failure_without_a_fault_are_flagged() -> None:
    """With no fault on the right process, both are unexplained."""
    verdict = rerun_then_fail(kill(PID_B, 12.0))
    assert verdict.figures["unexplained re-runs"] == 1
    assert verdict.figures["unexplained failures"] == 1


@pytest.mark.parametrize(
    ("message", "explained"),
    [("[Errno 28] No space left on device", True), ("DeadlockDetected: deadlock detected", False)],
)
def test_a_fault_explains_only_endings_it_can_cause(message: str, explained: bool) -> None:
    """A full disk explains an attempt that failed for want of space, not one that
    failed on a deadlock while the disk happened to be full."""
    job = job_row("j", "completed", attempt=2)
    history = [
        claim("j", 1, PID_A, 10.0),
        end("j", 1, "queued", 11.0, "unexpected_error", message),
        claim("j", 2, PID_B, 12.0),
        end("j", 2, "completed", 13.0),
    ]
    full = Fault("disk_full", "artifact filesystem", 9.0, 15.0)
    verdict = check(round_record([job], history, [full]))
    assert (verdict.figures["unexplained re-runs"] == 0) is explained


def test_work_finished_then_redone_without_a_fault_is_a_duplicate() -> None:
    """The export finished in attempt 1 and its completion did not stick (no fault):
    the job ran twice."""
    job = job_row("j", "completed", attempt=2)
    history = [
        claim("j", 1, PID_A, 10.0),
        end("j", 1, "queued", 11.0, "unexpected_error"),
        claim("j", 2, PID_B, 12.0),
        end("j", 2, "completed", 13.0),
    ]
    runs = {"j": [Execution("j", 1, PID_A, 10.1, 10.9), Execution("j", 2, PID_B, 12.1, 12.9)]}
    verdict = check(round_record([job], history, executions=runs))
    assert verdict.figures["duplicated completions"] == 1
    assert verdict.figures["unexplained re-runs"] == 1


def test_missing_stuck_and_not_created_jobs_are_told_apart() -> None:
    """A created job missing from the store is lost; one still running is lost and stuck;
    a request that never got an answer is not created, not lost."""
    record = round_record([job_row("a", "running")], [claim("a", 1, PID_A, 1.0)])
    record.requests += [JobRequest(1, "o", {}), JobRequest(2, "o", {})]
    record.created[1] = "gone"
    record.not_created[2] = "ConnectError"
    verdict = check(record)
    assert verdict.figures["lost"] == 2
    assert verdict.figures["stuck"] == 1
    assert verdict.counts["not created (no answer)"] == 1
    assert verdict.figures["unexplained re-runs"] == 0


def test_a_request_whose_answer_was_lost_is_adopted() -> None:
    """If the store holds the request's idempotency key, the job was created after all."""
    record = round_record([job_row("a", "cancelled", idempotency_key="chaos-0")], [])
    record.not_created[0] = record.created.pop(0)
    verdict = check(record)
    assert verdict.counts["created, answer lost (adopted)"] == 1
    assert verdict.figures["unexplained failures"] == 1  # nobody cancels in a round


def test_keys_that_do_not_name_their_claim_are_repeated_keys() -> None:
    """Attempt 1 was released and claimed again: if its files' keys hold nothing that
    differs between the two claims, both claims wrote the same keys."""
    history = [
        claim("j", 1, PID_A, 1.0),
        Transition("j", 0, "queued", "running", None, "x", None, 2.0, {}),
        claim("j", 1, PID_B, 3.0),
        end("j", 1, "completed", 4.0),
    ]

    def verdict_for(key: str) -> Verdict:
        record = round_record([job_row("j", "completed")], history)
        record.snapshot.artifacts["j"] = [ArtifactRow("j", "f.csv", key, 1, "0", 1, "text/csv")]
        return check(record)

    assert verdict_for("jobs/j/1/f.csv").figures["repeated keys"] == 1
    token = holder(PID_B, f"t1{PID_B}").split("/")[1]
    assert verdict_for(f"o/j/{token}/f.csv").figures["repeated keys"] == 0


@pytest.mark.parametrize("fmt", ["csv", "tsv", "ndjson", "json", "parquet", "xlsx"])
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_exported_files_read_back(fmt: str, compression: str) -> None:
    """What exportd's writers produce parses back with its rows and its `n` column."""
    spec = FORMATS[fmt]
    buffer = io.BytesIO()
    stream = Stream(HashingSink(buffer), "none" if spec.container else compression)
    writer = spec.writer(stream, compression=compression)  # type: ignore[misc]
    for index in range(3):
        writer.write(slow_batch(index, 7))
    writer.close()
    suffix = "" if spec.container else COMPRESSIONS[compression]
    parsed = parse(f"part-00000.{spec.extension}{suffix}", buffer.getvalue())
    assert (parsed.format, parsed.rows, parsed.n) == (fmt, 21, list(range(21)))
