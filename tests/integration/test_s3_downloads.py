"""Downloads from S3 storage through a real server: `307` to a presigned URL of the bucket
(the default) or, with `EXPORTD_S3_DOWNLOADS=proxy`, exportd's own signed link streaming
from the bucket with the same Range/If-Range/ETag/HEAD behaviour as local files; links
from `POST /v1/exports/{id}/links` and the client's `link()` on every storage."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveServer, wait_for
from exportd import AsyncClient, Client

Start = Callable[..., LiveServer]
BIG = {"exporter": "synthetic", "params": {"rows": 60_000, "seed": 2}}
"""About 8 MiB of CSV: two parts of 5 MiB on S3."""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is SQLite: downloads are what they test."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def finished(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    created = client.post("/v1/exports", json=body)
    assert created.status_code == 202, created.text

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/exports/{created.json()['id']}").json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    job: dict[str, Any] = wait_for(done, 60, interval=0.05, what="the export")
    assert job["status"] == "completed", job["error"]
    return job


def downloads(client: httpx.Client, job: dict[str, Any]) -> int:
    count: int = client.get(f"/v1/exports/{job['id']}").json()["artifacts"][0]["downloads"]
    return count


def redirect(client: httpx.Client, job: dict[str, Any]) -> httpx.Response:
    response = client.get(f"/v1/exports/{job['id']}/download")
    assert response.status_code == 307, response.text
    assert response.headers["x-checksum-sha256"] == job["artifacts"][0]["sha256"]
    assert int(response.headers["x-expires-at"]) > time.time()
    return response


def test_download_redirects_to_a_presigned_url(
    live_server: Start, s3_settings: dict[str, Any]
) -> None:
    """The 307 goes straight to the bucket (counted as a download when issued); the
    presigned URL needs no token, names the file, serves ranges and the exact bytes."""
    server = live_server(**s3_settings)
    client = server.client(server.token("alice"))
    job = finished(client, BIG)
    artifact = job["artifacts"][0]
    location = redirect(client, job).headers["location"]
    assert location.startswith(s3_settings["s3_endpoint_url"] + "/")
    assert downloads(client, job) == 1
    with httpx.Client(timeout=30) as anonymous:
        whole = anonymous.get(location)
        assert whole.status_code == 200
        assert hashlib.sha256(whole.content).hexdigest() == artifact["sha256"]
        assert f'filename="{artifact["name"]}"' in whole.headers["content-disposition"]
        assert whole.headers["content-type"].startswith("text/csv")
        edge = 5 * 2**20  # across the first part's end
        span = anonymous.get(location, headers={"Range": f"bytes={edge - 10}-{edge + 9}"})
        assert span.status_code == 206
        assert span.content == whole.content[edge - 10 : edge + 10]
    assert downloads(client, job) == 1


def test_a_presigned_url_expires(live_server: Start, s3_settings: dict[str, Any]) -> None:
    """Past `EXPORTD_LINK_TTL_SECONDS` the bucket refuses the presigned URL as expired."""
    server = live_server(**s3_settings, link_ttl_seconds=1)
    client = server.client(server.token("alice"))
    job = finished(client, {"exporter": "synthetic", "params": {"rows": 10}})
    response = redirect(client, job)
    expires_at = int(response.headers["x-expires-at"])
    wait_for(lambda: time.time() > expires_at + 1, what="the link to expire")
    with httpx.Client(timeout=30) as anonymous:
        refused = anonymous.get(response.headers["location"])
    assert refused.status_code == 403
    assert "expired" in refused.text.lower()


def test_proxy_mode_streams_from_the_bucket_like_local_files(
    live_server: Start, s3_settings: dict[str, Any]
) -> None:
    """With EXPORTD_S3_DOWNLOADS=proxy the 307 goes to exportd's signed link, which
    answers HEAD, Range (across parts), If-Range and ETag as for local files, and counts
    a download once it reaches the last byte."""
    server = live_server(**s3_settings, s3_downloads="proxy")
    client = server.client(server.token("alice"))
    job = finished(client, BIG)
    artifact, size = job["artifacts"][0], job["artifacts"][0]["size"]
    link = redirect(client, job).headers["location"]
    assert link.startswith("/v1/files/")
    anonymous = server.client(None)
    head = anonymous.head(link)
    assert (head.status_code, int(head.headers["content-length"])) == (200, size)
    etag = head.headers["etag"]
    assert etag == f'"{artifact["sha256"]}"'
    edge = 5 * 2**20
    first = anonymous.get(link, headers={"Range": f"bytes=0-{edge + 99}"})
    assert (first.status_code, first.headers["content-range"]) == (
        206,
        f"bytes 0-{edge + 99}/{size}",
    )
    assert downloads(client, job) == 0
    rest = anonymous.get(link, headers={"Range": f"bytes={edge + 100}-", "If-Range": etag})
    assert rest.status_code == 206
    assert hashlib.sha256(first.content + rest.content).hexdigest() == artifact["sha256"]
    stale = anonymous.get(link, headers={"Range": "bytes=100-", "If-Range": '"other"'})
    assert (stale.status_code, len(stale.content)) == (200, size)
    beyond = anonymous.get(link, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert downloads(client, job) == 2


@pytest.mark.parametrize("mode", ["local", "presigned", "proxy"])
def test_links_are_absolute_with_expiry_and_checksum(
    live_server: Start, s3_settings: dict[str, Any], mode: str
) -> None:
    """`POST /v1/exports/{id}/links` (with `?name=` for one file of several) returns an
    absolute URL that downloads the file without a token, its expiry, sha256 and size."""
    settings = {} if mode == "local" else {**s3_settings, "s3_downloads": mode}
    server = live_server(**settings)
    client = server.client(server.token("alice"))
    options = {"max_rows_per_file": 1000}
    job = finished(client, {"exporter": "synthetic", "params": {"rows": 2500}, "options": options})
    unnamed = client.post(f"/v1/exports/{job['id']}/links")
    assert unnamed.status_code == 400 and unnamed.json()["code"] == "artifact_name_required"
    part = next(a for a in job["artifacts"] if a["name"].startswith("part-00001"))
    answer = client.post(f"/v1/exports/{job['id']}/links", params={"name": part["name"]})
    assert answer.status_code == 200, answer.text
    link = answer.json()
    assert (link["sha256"], link["size"]) == (part["sha256"], part["size"])
    expires = datetime.fromisoformat(link["expires_at"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 901
    base = s3_settings["s3_endpoint_url"] if mode == "presigned" else server.url + "/v1/files/"
    assert link["url"].startswith(base)
    with httpx.Client(timeout=30) as anonymous:
        got = anonymous.get(link["url"])
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == part["sha256"]


@pytest.mark.parametrize("mode", ["presigned", "proxy"])
def test_the_client_links_and_downloads_verified_files(
    live_server: Start, s3_settings: dict[str, Any], mode: str, tmp_path: Path
) -> None:
    """`Client.link` and `AsyncClient.link` return the link; `Client.download` fetches a
    multipart object to a file and verifies its sha256, in both download modes."""
    server = live_server(**s3_settings, s3_downloads=mode)
    token = server.token("alice")
    with Client(server.url, token) as client:
        job = client.wait(client.create(**BIG).id)
        (artifact,) = job.artifacts
        link = client.link(job.id)
        assert (link.sha256, link.size) == (artifact.sha256, artifact.size)
        assert link.url.startswith("http")
        result = client.download(job.id, tmp_path / "out.csv")
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == artifact.sha256

    async def alink() -> str:
        async with AsyncClient(server.url, token) as client:
            return (await client.link(job.id)).sha256

    assert asyncio.run(alink()) == artifact.sha256
