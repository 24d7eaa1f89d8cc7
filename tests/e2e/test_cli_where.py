"""Where `exportd` looks and writes: `--app` imports from the current directory (with
the installed `exportd` script, not only `python -m`), every command that opens the job
store says which one and warns when it had to create it, and `exportd jobs` without a
URL works on the same local store as `exportd export`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import Served, base_env, exportd, local_env, served

pytestmark = pytest.mark.slow
__all__ = ["served"]

SCRIPT = Path(sys.executable).with_name("exportd")
MODULE = '''
from exportd.exporters import exporter


@exporter("mine")
def mine(params, ctx):
    """Two rows from the current directory."""
    yield [{"n": 1}, {"n": 2}]


app = object()
'''


def test_app_imports_from_the_current_directory(tmp_path: Path) -> None:
    """`exportd --app myexports:app` (the console script, whose own folder is first on
    sys.path) finds `myexports.py` in the current directory."""
    (tmp_path / "myexports.py").write_text(MODULE)
    env = local_env(tmp_path)
    listed = subprocess.run(
        [str(SCRIPT), "exporters", "mine", "--app", "myexports:app"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("mine: Two rows from the current directory.")
    ran = subprocess.run(
        [str(SCRIPT), "export", "mine", "--app", "myexports", "-o", "out.csv"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out.csv").read_text().split() == ['"n"', "1", "2"]


def test_an_app_that_does_not_import_is_a_usage_error(tmp_path: Path) -> None:
    """A missing module exits 2 with the import error, not a traceback."""
    result = exportd("exporters", "--app", "not_here", env=local_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot import 'not_here': No module named 'not_here'" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_create_says_which_store_and_warns_when_it_is_new(tmp_path: Path) -> None:
    """The first `token create` in a directory names the new SQLite file and warns that
    a server elsewhere will not see it; the second names it without the warning."""
    env = base_env()
    first = exportd("token", "create", "--owner", "ann", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    store = tmp_path.resolve() / ".exportd" / "exportd.db"
    assert f"job store: SQLite file {store}" in first.stderr
    assert "a new, empty one was created" in first.stderr
    assert first.stdout.startswith("exd_")
    second = exportd("token", "list", env=env, cwd=tmp_path)
    assert f"job store: SQLite file {store}" in second.stderr
    assert "warning" not in second.stderr
    assert "ann" in second.stdout


def test_serve_says_when_it_created_its_store(served: Served) -> None:
    """The banner of a first start marks the job store as new."""
    banner = (served.home / "serve.log").read_text().splitlines()
    store = next(line for line in banner if line.strip().startswith("job store:"))
    assert store.endswith("(new: created now)")


def test_jobs_without_a_url_see_the_local_exports(tmp_path: Path) -> None:
    """Without EXPORTD_URL, `jobs list/show/download` work on the store `export` used."""
    env = local_env(tmp_path)
    empty = exportd("jobs", "list", env=env, cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith("no jobs (")
    exported = exportd("export", "synthetic", "-p", "rows=7", "-o", "a.csv", env=env, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    job_id = exported.stderr.split("export ", 1)[1].split()[0]
    listed = exportd("jobs", "list", env=env, cwd=tmp_path)
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "EXPORTER", "PROGRESS", "CREATED"]
    assert row.split()[:3] == [job_id, "completed", "synthetic"]
    assert "no --url / EXPORTD_URL: working in this process" in listed.stderr
    shown = exportd("jobs", "show", job_id, env=env, cwd=tmp_path)
    assert "completed" in shown.stdout
    copied = exportd("jobs", "download", job_id, "-o", "b.csv", env=env, cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()
    missing = exportd("jobs", "show", "0190aaaa-0000-7000-8000-000000000000", env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert "error: not_found: no such export job" in missing.stderr


def test_both_commands_say_what_happens_without_a_url(tmp_path: Path) -> None:
    """`export --help` and `jobs --help` both say they use the local store in-process."""
    for command in ("export", "jobs"):
        text = exportd(command, "--help", env=local_env(tmp_path), cwd=tmp_path).stdout
        flat = " ".join(text.split())
        assert "without, " in flat and "in this process" in flat and "local job store" in flat
