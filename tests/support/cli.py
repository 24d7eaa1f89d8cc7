"""Running the `exportd` command as users do, for the e2e tests: real subprocesses
configured by environment variables, against a real `exportd serve` subprocess (the
`served` fixture), in-process on an embedded store, or under a pseudo-terminal."""

from __future__ import annotations

import csv
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fcntl import ioctl
from pathlib import Path

import httpx
import pytest

from conftest import TESTS, free_port, wait_for

FAST = {
    "EXPORTD_POLL_INTERVAL": "0.1",
    "EXPORTD_PROGRESS_INTERVAL": "0.05",
    "EXPORTD_GRACE_SECONDS": "0",
    "EXPORTD_MAX_ATTEMPTS": "1",
}
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
"""A terminal control sequence (cursor moves, erasing, colours)."""


def base_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any EXPORTD_ setting, with the test exporters
    importable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(FAST)
    env.update(extra)
    return env


def exportd(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exportd", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def local_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """`base_env` for in-process commands on a store of their own under `tmp_path`."""
    return base_env(EXPORTD_HOME=str(tmp_path / "home"), **extra)


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


@dataclass
class Served:
    url: str
    token: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(**{"EXPORTD_URL": self.url, "EXPORTD_TOKEN": self.token, **extra})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`exportd serve --app support.exporters` on a free port, with its own home; the
    admin token is read from its start-up banner."""
    home = tmp_path_factory.mktemp("served")
    port = free_port()
    env = base_env(EXPORTD_HOME=str(home), EXPORTD_PORT=str(port))
    with open(home / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exportd", "serve", "--app", "support.exporters"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _healthy(url), timeout=30, interval=0.1, what="exportd serve")
            banner = (home / "serve.log").read_text().splitlines()
            token = banner[
                banner.index("An admin token was created (it is shown only this once):") + 1
            ]
            yield Served(url, token.strip(), home)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(params=["server", "in-process"])
def either_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of `exportd` on the module's `served` server, then without a URL
    (in-process, on a store of its own under `tmp_path`)."""
    if request.param == "server":
        live: Served = request.getfixturevalue("served")
        return live.env()
    return local_env(tmp_path)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class TerminalRun:
    """What a command wrote to its terminal (stderr) and to stdout (a pipe)."""

    returncode: int
    terminal: str
    stdout: str

    def frames(self) -> list[str]:
        """Each state of the live lines, as the terminal showed it: the text between
        two redraws, without control sequences."""
        parts = re.split(r"\r|\x1b\[2K|\x1b\[1A|\n", self.terminal)
        return [text for part in parts if (text := CSI.sub("", part)).strip()]

    @property
    def redraws(self) -> int:
        """How many times the live display was drawn (it erases its line first)."""
        return self.terminal.count("\r\x1b[2K")


class Terminal:
    """`exportd ARGS` with stderr (and stdin) on a pseudo-terminal `columns` wide and
    stdout on a pipe."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path, columns: int) -> None:
        self._leader, follower = pty.openpty()
        ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exportd", *args],
            env={**env, "COLUMNS": str(columns), "TERM": "xterm"},
            cwd=cwd,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        self._chunks: list[bytes] = []
        self._closed = False

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def read_until(self, wanted: str, timeout: float = 60) -> str:
        """Read the terminal until `wanted` has been written (control sequences left
        out); fail after `timeout` seconds without it."""
        deadline = time.monotonic() + timeout
        while wanted not in CSI.sub("", self.text):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{wanted!r} never came: {self.text[-2000:]!r}")
        return self.text

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`: False at the end of the output."""
        if self._closed:
            return False
        ready, _, _ = select.select([self._leader], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self._leader, 65536)
        except OSError:  # EIO: every holder of the terminal has closed it
            data = b""
        if not data:
            self._closed = True
            return False
        self._chunks.append(data)
        return True

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 120) -> TerminalRun:
        """Read to the end and wait for the command to exit."""
        deadline = time.monotonic() + timeout
        try:
            while self._read(max(deadline - time.monotonic(), 0.01)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"still writing after {timeout}s")
            assert self.proc.stdout is not None
            stdout = self.proc.stdout.read().decode()
            self.proc.wait(timeout=timeout)
        finally:
            self.close()
        return TerminalRun(self.proc.returncode, self.text, stdout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._leader >= 0:
            os.close(self._leader)
            self._leader = -1
            self._closed = True


def run_in_terminal(
    *args: str, env: dict[str, str], cwd: Path, columns: int, timeout: float = 120
) -> TerminalRun:
    """Run `exportd ARGS` to its end on a pseudo-terminal `columns` wide."""
    return Terminal(*args, env=env, cwd=cwd, columns=columns).finish(timeout)
