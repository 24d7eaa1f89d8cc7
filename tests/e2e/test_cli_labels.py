"""`--label` on `exportd export` (through a real `exportd serve` subprocess and in-process)
and on `exportd jobs list`, and `exportd jobs history`, as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import Served, base_env, exportd, served

from exportd.store import open_store

pytestmark = pytest.mark.slow
__all__ = ["served"]  # the server fixture, shared with test_cli


def test_labels_through_the_server(served: Served, tmp_path: Path) -> None:
    """An export made with two labels is listed by one of them (and not by another
    value); its history shows its steps and who took them."""
    made = exportd(
        "export", "synthetic", "-p", "rows=50", "--label", "doc=7", "--label", "stage=final",
        "-o", "out.csv", env=served.env(), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    listed = exportd("jobs", "list", "--label", "doc=7", "--json", env=served.env(), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (job,) = json.loads(listed.stdout)
    assert job["labels"] == {"doc": "7", "stage": "final"}
    other = exportd("jobs", "list", "--label", "doc=8", "--json", env=served.env(), cwd=tmp_path)
    assert json.loads(other.stdout) == []
    history = exportd("jobs", "history", job["id"], "--json", env=served.env(), cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    events = [json.loads(line) for line in history.stdout.splitlines()]
    assert (events[0]["type"], events[-1]["type"]) == ("created", "completed")
    assert events[0]["actor"].startswith("admin/") and events[-1]["actor"] == "worker"
    text = exportd("jobs", "history", job["id"], env=served.env(), cwd=tmp_path).stdout
    assert len(text.splitlines()) == len(events) and " created " in text


def test_labels_in_process(tmp_path: Path) -> None:
    """In-process, labels are stored on the job; a label the API would refuse is a
    usage error (exit 2) before anything runs."""
    env = base_env(EXPORTD_HOME=str(tmp_path / "home"))
    made = exportd(
        "export", "synthetic", "-p", "rows=20", "--label", "doc=9", env=env, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'exportd.db'}")
    (job,) = store.list_jobs(None).jobs
    store.dispose()
    assert job.labels == {"doc": "9"}
    bad = exportd("export", "synthetic", "--label", "no spaces=1", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "labels.no spaces" in bad.stderr
    shapeless = exportd("export", "synthetic", "--label", "doc", env=env, cwd=tmp_path)
    assert shapeless.returncode == 2 and "is not KEY=VALUE" in shapeless.stderr
