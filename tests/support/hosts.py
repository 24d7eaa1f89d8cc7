"""Separate hosts on one machine: network namespaces joined by a bridge, each with an
address of its own, and processes started inside them.

`Network` makes a bridge in the root namespace (so the test process can reach every
host) and one namespace per host with a veth pair into the bridge; names carry a random
tag so that two runs at once never collide, and everything is removed at the end."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def namespaces_available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    probe = f"exdprobe{random.randrange(1 << 16):04x}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process on this host, its output to `log`."""
        handle: IO[bytes]
        with log.open("ab") as handle:
            proc = subprocess.Popen(
                self.command(argv), env=env, stdout=handle, stderr=handle, cwd=cwd
            )
        self.processes.append(proc)
        return proc

    def call(
        self, argv: Sequence[str], *, env: dict[str, str], timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv), env=env, capture_output=True, text=True, timeout=timeout
        )

    def pids(self) -> list[int]:
        found = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True
        )
        return [int(pid) for pid in found.stdout.split()]

    def kill_everything(self) -> int:
        """SIGKILL every process in the namespace, as a host losing power would; returns
        how many there were."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.processes:
            proc.wait(timeout=30)
        return len(pids)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Network:
    """A bridge and one namespace per host, addressed 10.<a>.<b>.0/24 (random per run)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = f"{random.randrange(1 << 20):05x}"
        second, third = random.randrange(64, 250), random.randrange(1, 250)
        self.prefix = f"10.{second}.{third}"
        self.bridge = f"exb{self.tag}"
        self.gateway = f"{self.prefix}.1"
        self.hosts = {
            name: Host(name, f"exd{self.tag}-{name}", f"{self.prefix}.{10 + index}")
            for index, name in enumerate(names)
        }

    def __enter__(self) -> Network:
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for index, host in enumerate(self.hosts.values()):
            outside = f"exv{self.tag}{index}"
            run("ip", "netns", "add", host.namespace)
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0",
                "netns", host.namespace)  # fmt: skip
            run("ip", "link", "set", outside, "master", self.bridge, "up")
            inside = ["ip", "netns", "exec", host.namespace]
            run(*inside, "ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
            run(*inside, "ip", "link", "set", "eth0", "up")
            run(*inside, "ip", "link", "set", "lo", "up")

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
