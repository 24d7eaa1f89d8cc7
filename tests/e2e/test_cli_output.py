"""Where `exportd export` and `exportd jobs download` write: `-o` is checked before any
job is created (a missing or unwritable directory, an existing file without --force:
exit 2, nothing created), and `-o -` writes the verified file to stdout."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from exportd import Client
from support.cli import Served, either_env, exportd, local_env, served

pytestmark = pytest.mark.slow
__all__ = ["either_env", "served"]

SEEDED = ("synthetic", "-p", "rows=50", "-p", "seed=3")


def job_ids(live: Served) -> set[str]:
    with Client(live.url, live.token) as client:
        return {job.id for job in client.iter_jobs()}


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("missing/x.csv", "there is no directory 'missing' to write 'missing/x.csv' into"),
        ("missing/", "there is no directory 'missing/'"),
        ("/dev/null", "'/dev/null' exists and is not a regular file"),
    ],
)
def test_a_bad_output_is_refused_before_the_job_exists(
    served: Served, tmp_path: Path, output: str, reason: str
) -> None:
    """Exit 2 with the reason, and the server has no new job."""
    before = job_ids(served)
    result = exportd("export", *SEEDED, "-o", output, env=served.env(), cwd=tmp_path)
    assert result.returncode == 2
    assert reason in result.stderr
    assert job_ids(served) == before


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_an_unwritable_directory_is_refused_in_process(tmp_path: Path) -> None:
    """In-process too, before the job store is even opened (none is created)."""
    env = local_env(tmp_path)
    result = exportd("export", *SEEDED, "-o", "/proc/x.csv", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot write in '/proc'" in result.stderr
    assert not (tmp_path / "home").exists()


def test_an_existing_file_needs_force(served: Served, tmp_path: Path) -> None:
    """Without --force an existing file is kept (exit 2); with it, replaced."""
    kept = tmp_path / "out.csv"
    kept.write_text("mine\n")
    refused = exportd("export", *SEEDED, "-o", "out.csv", env=served.env(), cwd=tmp_path)
    assert refused.returncode == 2
    assert "'out.csv' exists; pass --force to overwrite it" in refused.stderr
    assert kept.read_text() == "mine\n"
    forced = exportd("export", *SEEDED, "-o", "out.csv", "--force", env=served.env(), cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert kept.read_text().startswith('"order_id"')


def test_dash_writes_the_file_to_stdout(either_env: dict[str, str], tmp_path: Path) -> None:
    """`-o -`: stdout holds exactly the file (as `-o FILE` saves it), stderr the rest."""
    env = either_env
    piped = exportd("export", *SEEDED, "-o", "-", env=env, cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    saved = exportd("export", *SEEDED, "-o", "file.csv", env=env, cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    assert piped.stdout == (tmp_path / "file.csv").read_text()
    assert "sha256 verified: stdout" in piped.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["file.csv"]


def test_jobs_download_checks_its_output_and_writes_stdout(served: Served, tmp_path: Path) -> None:
    """`jobs download` refuses an existing file without --force, and `-o -` prints it."""
    with Client(served.url, served.token) as client:
        job = client.wait(client.create("synthetic", {"rows": 5, "seed": 1}).id)
    (tmp_path / "there.csv").write_text("mine\n")
    refused = exportd("jobs", "download", job.id, "-o", "there.csv", env=served.env(), cwd=tmp_path)
    assert refused.returncode == 2
    assert (tmp_path / "there.csv").read_text() == "mine\n"
    printed = exportd("jobs", "download", job.id, "-o", "-", env=served.env(), cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert len(list(csv.reader(io.StringIO(printed.stdout)))) == 6
