"""What happened in a round, as recorded by parties other than exportd's Python code.

- The *transition history*: a trigger the harness adds to the jobs table appends every
  claim and every status change, with the whole new row and the database's clock, to
  `chaos_transitions`, in the transaction that made it. So it holds exactly the
  committed history: which lease held which attempt, from when to when, and how each
  claim ended. (It observes; it takes no lock exportd takes.)
- The *execution log* of the chaos exporter: which process really ran which attempt.
- A *snapshot* of the store after the round: jobs, artifact rows, `completed` events,
  read with plain SQL (no exportd code), so a bug in the store cannot hide itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

TERMINAL = ("completed", "failed", "cancelled")

PG_RECORDER = [
    """CREATE TABLE chaos_transitions (
        seq BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        status TEXT NOT NULL, old_status TEXT NOT NULL, lease_owner TEXT,
        old_lease_owner TEXT, error_code TEXT, at DOUBLE PRECISION NOT NULL,
        row_json TEXT NOT NULL)""",
    """CREATE FUNCTION chaos_record_transition() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO chaos_transitions (job_id, attempt, status, old_status, lease_owner,
            old_lease_owner, error_code, at, row_json)
        VALUES (NEW.id, NEW.attempt, NEW.status, OLD.status, NEW.lease_owner,
            OLD.lease_owner, NEW.error_code, extract(epoch FROM clock_timestamp()),
            to_jsonb(NEW)::text);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER chaos_record_transition AFTER UPDATE ON exportd_jobs FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.attempt IS DISTINCT FROM NEW.attempt
          OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner)
    EXECUTE FUNCTION chaos_record_transition()""",
]

SQLITE_TABLE = """CREATE TABLE chaos_transitions (
    seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    status TEXT NOT NULL, old_status TEXT NOT NULL, lease_owner TEXT, old_lease_owner TEXT,
    error_code TEXT, at REAL NOT NULL, row_json TEXT NOT NULL)"""

SQLITE_TRIGGER = """CREATE TRIGGER chaos_record_transition AFTER UPDATE ON exportd_jobs
    WHEN OLD.status IS NOT NEW.status OR OLD.attempt IS NOT NEW.attempt
         OR OLD.lease_owner IS NOT NEW.lease_owner
    BEGIN
        INSERT INTO chaos_transitions (job_id, attempt, status, old_status, lease_owner,
            old_lease_owner, error_code, at, row_json)
        VALUES (NEW.id, NEW.attempt, NEW.status, OLD.status, NEW.lease_owner,
            OLD.lease_owner, NEW.error_code, (julianday('now') - 2440587.5) * 86400.0,
            json_object({columns}));
    END"""


def open_engine(url: str) -> Engine:
    """An engine for the harness's own reads (never exportd's store classes)."""
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 60})
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1),
        pool_pre_ping=True,
        pool_size=2,
        connect_args={"connect_timeout": 5},
    )


def install_recorder(engine: Engine) -> None:
    """Add the transition history table and trigger (after `exportd migrate`)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for statement in PG_RECORDER:
                conn.exec_driver_sql(statement)
            return
        names = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(exportd_jobs)")]
        columns = ", ".join(f"'{name}', NEW.{name}" for name in names)
        conn.exec_driver_sql(SQLITE_TABLE)
        conn.exec_driver_sql(SQLITE_TRIGGER.format(columns=columns))


def count_terminal(engine: Engine) -> tuple[int, int]:
    """(terminal jobs, all jobs) in the store."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM exportd_jobs GROUP BY status"))
        counts = {status: int(n) for status, n in rows}
    return sum(counts.get(s, 0) for s in TERMINAL), sum(counts.values())


def holding_pids(engine: Engine, pids: Iterable[int]) -> set[int]:
    """The worker processes that hold running jobs right now."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT lease_owner FROM exportd_jobs WHERE status = 'running'")
        )
        holders = [holder_pid(r[0], pids) for r in rows if r[0]]
    return {pid for pid in holders if pid is not None}


@dataclass(frozen=True)
class JobRow:
    id: str
    owner: str
    exporter: str
    status: str
    attempt: int
    max_attempts: int
    error_code: str | None
    error_message: str | None
    params: dict[str, Any]
    format: str
    compression: str
    options: dict[str, Any]
    idempotency_key: str | None


@dataclass(frozen=True)
class ArtifactRow:
    job_id: str
    name: str
    storage_key: str
    size: int
    sha256: str
    rows: int | None
    content_type: str


@dataclass(frozen=True)
class Transition:
    job_id: str
    attempt: int
    status: str
    old_status: str
    lease_owner: str | None
    old_lease_owner: str | None
    error_code: str | None
    at: float
    row: dict[str, Any]


@dataclass
class Snapshot:
    jobs: dict[str, JobRow]
    artifacts: dict[str, list[ArtifactRow]]
    completed_events: Counter[str]
    transitions: list[Transition]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _job(r: Any) -> JobRow:
    return JobRow(
        id=r.id,
        owner=r.owner,
        exporter=r.exporter,
        status=r.status,
        attempt=r.attempt,
        max_attempts=r.max_attempts,
        error_code=r.error_code,
        error_message=r.error_message,
        params=_json(r.params),
        format=r.format,
        compression=r.compression,
        options=_json(r.options) or {},
        idempotency_key=r.idempotency_key,
    )


def read_snapshot(engine: Engine) -> Snapshot:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM exportd_jobs"))
        jobs = {r.id: _job(r) for r in rows}
        artifacts: dict[str, list[ArtifactRow]] = {}
        query = "SELECT job_id, name, storage_key, size, sha256, rows, content_type"
        for r in conn.execute(sa.text(f"{query} FROM exportd_artifacts ORDER BY job_id, name")):
            artifacts.setdefault(r.job_id, []).append(ArtifactRow(*r))
        events = conn.execute(
            sa.text(
                "SELECT job_id, count(*) FROM exportd_job_events WHERE type = 'completed' "
                "GROUP BY job_id"
            )
        )
        completed = Counter({job_id: int(n) for job_id, n in events})
        transitions = [
            Transition(*r[:-1], row=_json(r[-1]))
            for r in conn.execute(
                sa.text(
                    "SELECT job_id, attempt, status, old_status, lease_owner, old_lease_owner,"
                    " error_code, at, row_json FROM chaos_transitions ORDER BY seq"
                )
            )
        ]
    return Snapshot(jobs, artifacts, completed, transitions)


@dataclass
class Claim:
    """One lease on one attempt, from the claim to the transition that ended it."""

    job_id: str
    attempt: int
    holder: str
    pid: int | None
    start: float
    row: dict[str, Any]
    end: float | None = None
    outcome: str | None = None
    """The job's status right after: completed, failed, cancelled or queued."""
    error_code: str | None = None
    error_message: str | None = None
    released: bool = False
    """Given back by a shutting-down worker (its attempt uncounted)."""


def holder_pid(holder: str, pids: Iterable[int]) -> int | None:
    """The worker process named in a lease holder (`host:pid:…/token` today)."""
    known = set(pids)
    for pattern in (r":(\d+):", r"(\d+)"):
        for found in re.findall(pattern, holder):
            if int(found) in known:
                return int(found)
    return None


def claims_from(transitions: list[Transition], pids: Iterable[int]) -> dict[str, list[Claim]]:
    """Each job's claims in order, from its transitions (already in commit order)."""
    known = set(pids)
    claims: dict[str, list[Claim]] = {}
    open_claims: dict[str, Claim] = {}
    for t in transitions:
        current = open_claims.pop(t.job_id, None)
        if current is not None:
            current.end, current.outcome, current.error_code = t.at, t.status, t.error_code
            current.error_message = t.row.get("error_message")
            current.released = t.status == "queued" and t.attempt < current.attempt
        if t.status == "running" and t.lease_owner:
            claim = Claim(
                t.job_id, t.attempt, t.lease_owner, holder_pid(t.lease_owner, known), t.at, t.row
            )
            claims.setdefault(t.job_id, []).append(claim)
            open_claims[t.job_id] = claim
    return claims


@dataclass
class Execution:
    """One attempt as the chaos exporter saw it run."""

    job_id: str
    attempt: int
    pid: int
    started: float
    finished: float | None = None


@dataclass
class ExecutionLog:
    executions: dict[str, list[Execution]] = field(default_factory=dict)
    unreadable: int = 0


def read_executions(path: Path) -> ExecutionLog:
    log = ExecutionLog()
    running: dict[tuple[str, int, int], Execution] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        try:
            entry = json.loads(line)
            key = (entry["job"], int(entry["attempt"]), int(entry["pid"]))
            event, moment = entry["event"], float(entry["t"])
        except (ValueError, KeyError, TypeError):
            log.unreadable += 1
            continue
        if event == "start":
            execution = Execution(*key, started=moment)
            log.executions.setdefault(key[0], []).append(execution)
            running[key] = execution
        elif event == "finish" and key in running:
            running.pop(key).finished = moment
        else:
            log.unreadable += 1
    return log
