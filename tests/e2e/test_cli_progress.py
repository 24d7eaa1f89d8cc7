"""`exportd export`'s progress as a user sees it: under a pseudo-terminal of 80 and 40
columns (the live lines fit, say the ETA and the step where there is room, are redrawn
at a bounded rate and end with the elapsed time; a job waiting for a retry says which
attempt comes, when, and why), and through a pipe (a few plain lines)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import LiveServer, wait_for
from exportd.cli.progress import REFRESH_PER_SECOND
from exportd.jobs import ErrorInfo, Status, utcnow
from support.cli import CSI, Terminal, base_env, exportd, local_env, run_in_terminal

pytestmark = pytest.mark.slow

LIVE = ("queued", "running", "completed", "failed", "cancelled", "saving", "saved  ")
"""The first words of the live lines (a padded status; messages are not cut to fit)."""
SLOW = ("slow", "-p", "batches=30", "-p", "rows_per_batch=10", "-p", "delay=0.1")
APP = ("--app", "support.exporters")


@pytest.mark.parametrize("columns", [80, 40])
def test_the_live_lines_fit_the_terminal(tmp_path: Path, columns: int) -> None:
    """No frame is wider than the terminal; ETA and step show while running (the step
    shortened at 40 columns); the export's line ends with its elapsed time."""
    run = run_in_terminal(
        "export",
        *SLOW,
        *APP,
        "-o",
        "out.csv",
        env=local_env(tmp_path),
        cwd=tmp_path,
        columns=columns,
    )
    assert run.returncode == 0, run.terminal
    frames = [f for f in run.frames() if f.startswith(LIVE)]
    assert max(len(frame) for frame in frames) <= columns
    running = [f for f in frames if f.startswith("running") and "ETA" in f]
    assert running, frames
    assert any("batch " in f for f in running)
    if columns == 80:
        assert any("rows" in f and "batch " in f for f in running)
    completed = [f for f in frames if f.startswith("completed")]
    assert completed
    assert " in " in completed[-1]
    assert completed[-1].rstrip().endswith(" s")
    assert run.stdout.strip() == "out.csv"


def test_redraws_are_bounded_by_time_not_by_updates(tmp_path: Path) -> None:
    """Saving a file of thousands of chunks redraws at most REFRESH_PER_SECOND times a
    second of the whole run (plus the first and last frames), not once per chunk."""
    started = time.monotonic()
    run = run_in_terminal(
        "export",
        "synthetic",
        "-p",
        "rows=400000",
        "-o",
        "big.csv",
        env=local_env(tmp_path),
        cwd=tmp_path,
        columns=80,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.terminal[-2000:]
    size = (tmp_path / "big.csv").stat().st_size
    chunks = size // (256 * 1024)
    assert chunks > 200
    bound = REFRESH_PER_SECOND * elapsed + 3
    assert 2 <= run.redraws <= bound, (run.redraws, elapsed)
    saving = [f for f in run.frames() if f.startswith("saving")]
    assert len(saving) <= bound
    assert any(f.startswith("saved") for f in run.frames())


sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@sqlite_only
def test_a_job_waiting_for_a_retry_says_attempt_wait_and_last_error(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """While a failed attempt waits for the next, the line reads "attempt 2/3, retrying
    in N s: <code>: <message>"; Ctrl-C then cancels the job."""
    live = live_server(workers=False, max_attempts=3)
    env = base_env(EXPORTD_URL=live.url, EXPORTD_TOKEN=live.admin_token)
    terminal = Terminal("export", "synthetic", "-o", "x.csv", env=env, cwd=tmp_path, columns=100)
    try:
        terminal.read_until("queued on")
        store = live.runtime.store
        claim = wait_for(lambda: store.claim("test-worker", lease_seconds=30, owner_cap=10))
        error = ErrorInfo("upstream_unavailable", "the upstream said 503", retryable=True)
        store.fail(claim, error, retry_at=utcnow() + timedelta(seconds=40))
        terminal.read_until("attempt 2/3, retrying in ")
        terminal.interrupt()
        run = terminal.finish()
    finally:
        terminal.close()
    waiting = [f for f in run.frames() if "retrying in" in f]
    assert "upstream_unavailable: the upstream said 503" in waiting[0]
    seconds = int(waiting[0].split("retrying in ")[1].split(" s")[0])
    assert 30 <= seconds <= 40
    assert run.returncode == 130
    assert store.get(claim.job.id).status == Status.CANCELLED


def test_without_a_terminal_progress_is_a_few_plain_lines(tmp_path: Path) -> None:
    """Through a pipe: no control sequences, a line per change of status, the last one
    with the elapsed time."""
    result = exportd("export", *SLOW, *APP, "-o", "out.csv", env=local_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert not CSI.search(result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) <= 8, lines
    assert any(line.startswith("completed") and " in " in line for line in lines)
    assert lines[-1].startswith("saved ") and " in " in lines[-1]
