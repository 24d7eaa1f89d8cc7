"""Third-party exporters: discovered through the `exportd.exporters` entry-point group of
an installed distribution, or loaded with `--app module:object`, and run by a worker."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import TESTS, wait_for_status
from exportd.exporters import ENTRY_POINT_GROUP, load_all, load_app, registry
from exportd.jobs import NewJob, Status
from exportd.runtime import Runtime

PLUGIN_DIR = TESTS / "support" / "plugin_pkg"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is always SQLite."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`exportd-squares` installed the cheap way: its module and a `.dist-info` with an
    entry point, in a folder on sys.path (what `pip install` leaves in site-packages)."""
    site = tmp_path / "site-packages"
    info = site / "exportd_squares-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exportd-squares\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nsquares = exportd_squares\n")
    (site / "exportd_squares.py").write_text((PLUGIN_DIR / "exportd_squares.py").read_text())
    monkeypatch.syspath_prepend(str(site))
    yield site
    forget("squares", "exportd_squares")


def forget(exporter_name: str, module: str) -> None:
    registry._specs.pop(exporter_name, None)
    sys.modules.pop(module, None)


def test_entry_point_plugin_is_discovered(installed_plugin: Path) -> None:
    """load_all() imports the plugin named by the entry point and registers its exporter."""
    assert "squares" not in registry
    found = load_all()
    spec = found.get("squares")
    assert spec.description == "Numbers and their squares."
    assert "parquet" in spec.formats
    assert sys.modules["exportd_squares"].__file__ == str(installed_plugin / "exportd_squares.py")


def test_plugin_runs_end_to_end(
    installed_plugin: Path, make_runtime: Callable[..., Runtime]
) -> None:
    """A worker runs the plugin: total, step and rows arrive, and its errors keep their
    codes and retry classes."""
    runtime = make_runtime()
    jobs = [
        runtime.store.enqueue(
            NewJob(
                owner="alice", exporter="squares", params=params, format="ndjson", max_attempts=2
            )
        )
        for params in ({"rows": 2500}, {"fail": "permanent"}, {"fail": "retryable"})
    ]
    runtime.start_worker(concurrency=2)
    ok, permanent, retryable = (
        wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED) for job in jobs
    )
    assert ok.status == Status.COMPLETED, ok.error
    assert (ok.progress.done, ok.progress.total, ok.progress.message) == (2500, 2500, "squaring")
    with runtime.storage.open_read(ok.artifacts[0].storage_key) as handle:
        lines = handle.read().splitlines()
    assert (len(lines), lines[-1]) == (2500, b'{"n":2499,"square":6245001}')
    assert permanent.error is not None and retryable.error is not None
    assert (permanent.error.code, permanent.attempt) == ("no_squares", 1)
    assert (retryable.error.code, retryable.error.retryable, retryable.attempt) == ("busy", True, 2)


def test_app_module_object_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--app module:object` imports the module (registering its exporters) and resolves
    the object, failing loudly when it is missing."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    try:
        load_app("exportd_squares:squares")
        assert "squares" in registry
        with pytest.raises(AttributeError):
            load_app("exportd_squares:nothing_here")
    finally:
        forget("squares", "exportd_squares")
