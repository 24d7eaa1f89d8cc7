"""Claims under contention: many owners at their running cap, two worker processes with
eight slots each, hundreds of short jobs. No deadlock, every job runs exactly once on its
first attempt, and the contended paths (owners at their cap, owner locks busy) are
really taken: the workers' own counters say how often."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import settings_env, wait_for
from exportd.config import Settings
from exportd.jobs import NewJob
from exportd.store import open_store

pytestmark = pytest.mark.slow

STATS = re.compile(r"claim stats: (\{.*\})")


def spawn(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "exportd", "worker", "--app", "support.exporters", *args]
    with log.open("wb") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=settings_env(settings), stderr=handle)


def claim_stats(text: str) -> Counter[str]:
    """The counters a worker logs when it stops (see `Worker.stop`)."""
    import ast

    total: Counter[str] = Counter()
    for found in STATS.findall(text):
        total.update(ast.literal_eval(found))
    return total


@pytest.mark.parametrize(("owners", "cap"), [(4, 1), (5, 2)])
def test_two_workers_of_eight_slots_with_owners_at_their_cap(
    settings_for: Callable[..., Settings], tmp_path: Path, owners: int, cap: int
) -> None:
    """400+ short jobs from owners whose cap is far below the 16 slots: 0 deadlocks in
    any log, exactly one `started` event per job, no `retry_scheduled`, every job's work
    done once, and the contended claim paths counted."""
    settings = settings_for(owner_running_cap=cap, max_attempts=1, lease_seconds=10)
    store = open_store(settings.resolved_database_url())
    store.migrate()
    execlog = tmp_path / "exec.log"
    params = {"log": str(execlog), "seconds": 0.0}
    _, jobs = store.enqueue_many(
        [
            NewJob(owner=f"o{i % owners}", exporter="count", params=params, max_attempts=1)
            for i in range(420)
        ]
    )
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = [spawn(settings, log, "--concurrency", "8") for log in logs]
    try:
        wait_for(
            lambda: (
                store.count_by_status().get("queued", 0) + store.count_by_status().get("running", 0)
                == 0
            ),
            timeout=240,
            interval=0.5,
            what="the queue to drain",
        )
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=60)
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    assert re.search("deadlock", text, re.IGNORECASE) is None, text[-3000:]
    assert store.count_by_status() == {"completed": len(jobs)}
    events = store.events_after(0, limit=100_000)
    started = Counter(e.job_id for e in events if e.type == "started")
    assert set(started.values()) == {1}
    assert len(started) == len(jobs)
    assert [e for e in events if e.type in ("retry_scheduled", "rescued", "failed")] == []
    runs = Counter(line.split()[0] for line in execlog.read_text().splitlines())
    assert set(runs.values()) == {1}
    assert len(runs) == len(jobs)
    stats = claim_stats(text)
    print(f"{store.dialect_name} owners={owners} cap={cap}: {dict(stats)}")
    assert stats["claimed"] == len(jobs)
    assert stats["capped"] > 0, stats
    if store.dialect_name == "postgresql":
        assert stats["owner_lock_busy"] > 0, stats
    store.dispose()
