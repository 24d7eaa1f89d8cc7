"""Download links for an artifact: a presigned storage URL when the storage has them and
`EXPORTD_S3_DOWNLOADS` is `presigned` (the default), else exportd's own signed
`/v1/files/…` link, which streams the file through exportd."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import quote

from exportd.api.problems import Problem
from exportd.errors import StorageError
from exportd.jobs import Artifact
from exportd.runtime import Runtime
from exportd.storage.signing import sign


@dataclass(frozen=True)
class Link:
    url: str
    """Absolute for a presigned URL; for exportd's own link, the path under this server."""
    expires_at: int
    """Unix time; the link works until then."""
    presigned: bool


def content_disposition(name: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


def issue_link(runtime: Runtime, artifact: Artifact) -> Link:
    """A link to `artifact` that lives for `EXPORTD_LINK_TTL_SECONDS`. A presigned one is
    counted as a download now: exportd never sees the transfer."""
    ttl = runtime.settings.link_ttl_seconds
    if runtime.settings.s3_downloads == "presigned":
        now = math.floor(time.time())  # the signature counts from its own second, not later
        url = presign(runtime, artifact, ttl)
        if url is not None:
            runtime.store.count_download(artifact.job_id, artifact.name)
            return Link(url, now + ttl, presigned=True)
    expires_at = math.ceil(time.time()) + ttl  # lives >= the TTL
    signed = sign(runtime.secret_key(), artifact.job_id, artifact.name, expires_at)
    return Link(f"/v1/files/{signed}", expires_at, presigned=False)


def presign(runtime: Runtime, artifact: Artifact, ttl: int) -> str | None:
    try:
        return runtime.storage.presign(
            artifact.storage_key,
            expires_in=ttl,
            disposition=content_disposition(artifact.name),
            content_type=artifact.content_type,
        )
    except StorageError as exc:
        raise storage_problem(exc) from exc


def storage_problem(exc: StorageError) -> Problem:
    """A storage failure while serving a request: 503 (retry later) unless the storage
    refuses for good (500), with the storage error's code."""
    status = 503 if exc.retryable else 500
    headers = {"Retry-After": "5"} if exc.retryable else None
    return Problem(status, exc.code, f"the artifact storage failed: {exc}", headers=headers)
