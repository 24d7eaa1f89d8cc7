"""The `exportd` command as users run it: real subprocesses (`python -m exportd ...`)
configured by environment variables, against a real `exportd serve` subprocess or
in-process on an embedded store."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_for
from exportd import Client
from exportd.store import open_store
from support.cli import Served, base_env, csv_rows, exportd, served

pytestmark = pytest.mark.slow
__all__ = ["served"]  # the fixture, imported for this module's tests


# -- exportd export ---------------------------------------------------------------------


def test_export_on_the_server_and_in_process_give_the_same_verified_file(
    served: Served, tmp_path: Path
) -> None:
    """`exportd export` saves the verified file and prints its path, exit 0, both through
    the server and in-process; the deterministic exporter gives identical bytes."""
    remote = exportd(
        "export",
        "synthetic",
        "-p",
        "rows=3000",
        "-p",
        "seed=7",
        "-o",
        "remote.csv",
        env=served.env(),
        cwd=tmp_path,
    )
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.strip().splitlines()[-1] == "remote.csv"
    assert "sha256 verified" in remote.stderr
    (tmp_path / "local").mkdir()
    local = exportd(
        "export",
        "synthetic",
        "-p",
        "rows=3000",
        "-p",
        "seed=7",
        "-o",
        "local/",
        env=base_env(EXPORTD_HOME=str(tmp_path / "home")),
        cwd=tmp_path,
    )
    assert local.returncode == 0, local.stderr
    saved = tmp_path / local.stdout.strip().splitlines()[-1]
    assert saved.parent == tmp_path / "local"
    assert saved.read_bytes() == (tmp_path / "remote.csv").read_bytes()
    rows = csv_rows(saved)
    assert rows[0][:3] == ["order_id", "order_uuid", "customer_name"]
    assert len(rows) == 3001
    assert [r[0] for r in rows[1:4]] == ["1", "2", "3"]
    job_id = remote.stderr.split("export ", 1)[1].split()[0]
    with Client(served.url, served.token) as client:
        job = client.get(job_id)
    assert job.artifacts[0].sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert not list(tmp_path.rglob("*.part"))


def test_export_params_from_json_and_dotted_keys(tmp_path: Path) -> None:
    """`--params-json` and `-p` combine; values parse as JSON (numbers) or stay strings;
    `a.b=v` sets nested keys."""
    result = exportd(
        "export",
        "synthetic",
        "--params-json",
        '{"columns": {"n": "sequence"}}',
        "-p",
        "rows=4",
        "-p",
        "columns.tag.type=choice",
        "-p",
        'columns.tag.options=["x"]',
        "--format",
        "ndjson",
        "-o",
        "out.ndjson",
        env=base_env(EXPORTD_HOME=str(tmp_path / "home")),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "out.ndjson").read_text().splitlines()]
    assert lines == [{"n": i, "tag": "x"} for i in range(1, 5)]


def test_failed_export_exits_1_with_the_error_code(served: Served, tmp_path: Path) -> None:
    """An export that fails exits 1, prints its error code and message, writes no file."""
    result = exportd(
        "export",
        "flaky",
        "-p",
        "permanent=true",
        "-p",
        "code=source_said_no",
        "-o",
        "x.csv",
        env=served.env(),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "source_said_no" in result.stderr
    assert "the source said no" in result.stderr
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export"], "Missing argument 'EXPORTER'"),
        (["export", "synthetic", "-p", "rows"], "is not KEY=VALUE"),
        (["export", "synthetic", "-p", "rows=-1"], "invalid_params"),
        (["export", "synthetic", "--format", "docx"], "'docx' is not one of 'csv'"),
        (["export", "synthetic", "--format", "pdf"], "invalid_format"),
        (["export", "no_such_exporter"], "unknown_exporter"),
    ],
)
def test_bad_usage_exits_2(served: Served, tmp_path: Path, args: list[str], message: str) -> None:
    """Usage errors, and requests the server rejects as invalid (422), exit 2."""
    result = exportd(*args, env=served.env(), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_params_in_process_exit_2(tmp_path: Path) -> None:
    """In-process, params the exporter rejects are a usage error too, before any job runs."""
    result = exportd(
        "export",
        "synthetic",
        "-p",
        "rows=-1",
        env=base_env(EXPORTD_HOME=str(tmp_path / "home")),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "rows" in result.stderr


def _start_slow_export(
    env: dict[str, str], cwd: Path, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exportd",
            "export",
            "slow",
            "-p",
            "batches=400",
            "-p",
            "rows_per_batch=10",
            "-p",
            "delay=0.05",
            *extra,
        ],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    while first and not first.startswith("export "):
        first = proc.stderr.readline()
    assert first.startswith("export "), first
    return proc, first.split()[1]


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_ctrl_c_cancels_the_export_on_the_server(served: Served, tmp_path: Path) -> None:
    """SIGINT during a running export cancels the job on the server and exits 130."""
    proc, job_id = _start_slow_export(served.env(), tmp_path)
    with Client(served.url, served.token) as client:
        wait_for(lambda: client.get(job_id).progress.done > 0, timeout=30, what="progress")
        code, err = _interrupt(proc)
        assert code == 130, err
        assert f"cancelling export {job_id}" in err
        job = wait_for(
            lambda: (j := client.get(job_id)).is_terminal and j, timeout=20, what="cancelled"
        )
    assert job.status == "cancelled"
    assert not list(tmp_path.iterdir())


def test_ctrl_c_cancels_the_export_in_process(tmp_path: Path) -> None:
    """In-process, SIGINT cancels the job in the embedded store before exiting 130."""
    home = tmp_path / "home"
    env = base_env(EXPORTD_HOME=str(home))
    proc, job_id = _start_slow_export(env, tmp_path, "--app", "support.exporters")
    store = open_store(f"sqlite:///{home / 'exportd.db'}")
    try:
        wait_for(lambda: store.get(job_id).progress.done > 0, timeout=30, what="progress")
        code, err = _interrupt(proc)
        assert code == 130, err
        assert store.get(job_id).status == "cancelled"
    finally:
        store.dispose()


# -- exportd jobs -----------------------------------------------------------------------


def test_jobs_commands_against_the_server(served: Served, tmp_path: Path) -> None:
    """`jobs list/show --json` print JSON, `jobs watch --json` JSON lines ending completed;
    cancel, retry, download and rm do what they say."""
    env = served.env()
    with Client(served.url, served.token) as client:
        job = client.create("slow", {"batches": 6, "rows_per_batch": 5, "delay": 0.05})
        held = client.create("slow", {"batches": 400, "rows_per_batch": 1, "delay": 0.05})

    watched = exportd("jobs", "watch", job.id, "--json", env=env, cwd=tmp_path)
    assert watched.returncode == 0, watched.stderr
    snapshots = [json.loads(line) for line in watched.stdout.splitlines()]
    assert snapshots[-1]["status"] == "completed"
    assert snapshots[-1]["progress"]["done"] == 30
    assert all(s["id"] == job.id for s in snapshots)

    listed = exportd("jobs", "list", "--json", "--exporter", "slow", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {job.id, held.id} <= {j["id"] for j in json.loads(listed.stdout)}
    shown = exportd("jobs", "show", job.id, "--json", env=env, cwd=tmp_path)
    assert json.loads(shown.stdout)["artifacts"][0]["rows"] == 30
    plain = exportd("jobs", "show", job.id, env=env, cwd=tmp_path)
    assert "completed" in plain.stdout

    (tmp_path / "got").mkdir()
    downloaded = exportd("jobs", "download", job.id, "-o", "got/", env=env, cwd=tmp_path)
    assert downloaded.returncode == 0, downloaded.stderr
    rows = csv_rows(tmp_path / downloaded.stdout.strip())
    assert rows[0] == ["n", "label"]
    assert len(rows) == 31

    assert exportd("jobs", "cancel", held.id, env=env, cwd=tmp_path).returncode == 0
    with Client(served.url, served.token) as client:
        wait_for(lambda: client.get(held.id).status == "cancelled", timeout=20, what="cancel")
        retried = exportd("jobs", "retry", held.id, env=env, cwd=tmp_path)
        assert retried.returncode == 0, retried.stderr
        assert "queued" in retried.stdout or "running" in retried.stdout
        removed = exportd("jobs", "rm", held.id, env=env, cwd=tmp_path)
        assert removed.returncode == 0, removed.stderr
        missing = exportd("jobs", "show", held.id, env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert "not_found" in missing.stderr
    unauthorized = exportd("jobs", "list", env=served.env(EXPORTD_TOKEN="wrong"), cwd=tmp_path)
    assert unauthorized.returncode == 1
    assert "unauthorized" in unauthorized.stderr
