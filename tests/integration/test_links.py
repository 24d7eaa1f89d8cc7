"""The link-signing key: created once and atomically in the job store, never empty, shared
by every API server on that store (a link one issues downloads through another), and
overridden by `EXPORTD_SECRET_KEY`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from test_api import create, download_link, wait_done

from conftest import LiveServer, settings_env
from exportd.config import Settings
from exportd.runtime import Runtime

Start = Callable[..., LiveServer]

PRINT_KEY = "from exportd.runtime import Runtime; print(Runtime.open().secret_key().decode())"


def test_processes_starting_together_agree_on_one_non_empty_key(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    """Six processes with homes of their own open a fresh store at once: all print the
    same key, and it is long enough to sign with."""
    procs = []
    for index in range(6):
        settings = settings_for(home=tmp_path / f"home{index}")
        command = [sys.executable, "-c", PRINT_KEY]
        procs.append(
            subprocess.Popen(command, env=settings_env(settings), stdout=subprocess.PIPE, text=True)
        )
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1
    assert len(keys.pop()) >= 32


def test_a_link_issued_by_one_server_downloads_through_another(
    live_server: Start, tmp_path: Path
) -> None:
    """Two API servers on one store, each with its own home: a link signed by the first
    is valid on the second."""
    first = live_server(home=tmp_path / "a")
    second = live_server(workers=False, home=tmp_path / "b")
    client = first.client(first.token("alice"))
    job = wait_done(client, create(client)["id"])
    link = download_link(client, job["id"])
    response = second.client(None).get(link)
    assert response.status_code == 200
    assert response.headers["x-checksum-sha256"] == job["artifacts"][0]["sha256"]


def test_the_configured_key_wins_and_a_legacy_key_file_seeds_the_store(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    """`EXPORTD_SECRET_KEY` is used as given; without it, a key file an earlier version
    left in the home becomes the shared key, so its links stay valid."""
    configured = Runtime.open(settings_for(secret_key="k" * 40))
    assert configured.secret_key() == b"k" * 40
    home = tmp_path / "old-home"
    home.mkdir()
    (home / "secret.key").write_text("legacy-key-" + "x" * 30 + "\n")
    seeded = Runtime.open(settings_for(home=home))
    assert seeded.secret_key() == ("legacy-key-" + "x" * 30).encode()
    other = Runtime.open(settings_for(home=tmp_path / "new-home"))
    assert other.secret_key() == seeded.secret_key()
    for runtime in (configured, seeded, other):
        runtime.close()
