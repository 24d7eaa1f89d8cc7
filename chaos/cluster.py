"""What a chaos round owns outside exportd, so that breaking it disturbs nothing else:
a PostgreSQL cluster of its own on a free port (restarted in immediate mode as a fault)
and a small filesystem of its own for the artifact folder (filled up as a fault).

Both are torn down at the end of the round, whatever happened. PostgreSQL refuses to run
as root, so as root its commands run as the `postgres` OS user, in a directory it owns."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_bin_dir() -> Path:
    """`CHAOS_PG_BIN`, else the newest /usr/lib/postgresql/*/bin with initdb and pg_ctl."""
    if os.environ.get("CHAOS_PG_BIN"):
        return Path(os.environ["CHAOS_PG_BIN"])
    found = [Path(p) for p in glob.glob(PG_BIN_GLOB) if Path(p, "initdb").exists()]
    if not found:
        raise RuntimeError(f"no PostgreSQL binaries in {PG_BIN_GLOB} (set CHAOS_PG_BIN)")
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


class PostgresCluster:
    """`initdb` + `pg_ctl` in a temporary directory; trust auth on `host` only (127.0.0.1
    by default). `wrap` prefixes its commands, e.g. `ip netns exec <host>` to run the
    server on another (namespaced) host; then `subnet` is trusted too."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        wrap: list[str] | None = None,
        subnet: str | None = None,
    ) -> None:
        self.bin = bin_dir or pg_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="exportd-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.host = host
        self.wrap = wrap or []
        self.subnet = subnet
        self.port = free_port() if not self.wrap else 5432

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self.wrap, *_as_postgres(list(command))],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def _ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER,
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        settings = {
            "port": str(self.port),
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "500",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self.subnet is not None:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.subnet} trust\n")
        self._ctl("start", "-w", "-t", "60")

    def restart_immediate(self) -> None:
        """Stop without a shutdown checkpoint (as if the server crashed) and start again;
        returns once the server accepts connections."""
        self._ctl("restart", "-m", "immediate", "-w", "-t", "60")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._ctl("stop", "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(self.root, ignore_errors=True)


class ArtifactVolume:
    """The artifact folder, on a tmpfs of `size_mb` when mounting one is allowed.

    `fill()` writes a ballast file beside the folder (same filesystem, outside the
    artifact folder) until the filesystem is full; `clear()` removes it. Without a mount
    the folder is a plain directory and `skip_reason` says why the fault cannot run."""

    BLOCK = 1 << 20

    def __init__(self, workdir: Path, size_mb: int) -> None:
        self.mount_point = workdir / "volume"
        self.artifacts = self.mount_point / "artifacts"
        self.ballast = self.mount_point / "ballast"
        self.size_mb = size_mb
        self.mounted = False
        self.skip_reason: str | None = None

    def mount(self) -> None:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        command = ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs"]
        try:
            subprocess.run(
                [*command, str(self.mount_point)], check=True, capture_output=True, text=True
            )
        except FileNotFoundError:
            self.skip_reason = "no mount command"
        except subprocess.CalledProcessError as exc:
            self.skip_reason = f"mount -t tmpfs failed: {(exc.stderr or '').strip()}"
        else:
            self.mounted = True
        self.artifacts.mkdir(exist_ok=True)

    def fill(self) -> int:
        """Write the ballast until the filesystem refuses; returns the bytes written."""
        written = 0
        with open(self.ballast, "wb", buffering=0) as ballast:
            for block in (self.BLOCK, 4096, 1):
                chunk = b"\0" * block
                while True:
                    try:
                        written += ballast.write(chunk) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def clear(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def usage(self) -> dict[str, int]:
        usage = shutil.disk_usage(self.mount_point)
        return {"total": usage.total, "used": usage.used, "free": usage.free}

    def unmount(self) -> None:
        self.clear()
        if not self.mounted:
            return
        for command in (["umount", str(self.mount_point)], ["umount", "-l", str(self.mount_point)]):
            if subprocess.run(command, capture_output=True).returncode == 0:
                self.mounted = False
                return
            time.sleep(0.5)
