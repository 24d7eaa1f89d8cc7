"""`/v1/files/{signed}`: the signed, expiring download link. Needs no token; supports
`HEAD`, single `Range` requests (resumable downloads), `If-Range`, `ETag` (the sha256)
and streams in constant memory, from any storage (on S3: the proxy mode, for buckets
clients cannot reach). A download that reaches the file's last byte is counted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from exportd.api.auth import CurrentRuntime
from exportd.api.links import content_disposition, storage_problem
from exportd.api.openapi import problems
from exportd.api.problems import Problem
from exportd.api.validation import is_id
from exportd.errors import ArtifactNotFound, JobNotFound, StorageError
from exportd.jobs import Artifact, utcnow
from exportd.runtime import Runtime
from exportd.storage.signing import verify

router = APIRouter(prefix="/v1", tags=["files"])

CHUNK = 256 * 1024
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for, None for the whole file; raises 416."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # unsupported forms (several ranges) get the whole file
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
    if start >= size or start > end:
        raise Problem(
            416,
            "range_not_satisfiable",
            f"the file has {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def find_artifact(runtime: Runtime, signed: str) -> Artifact:
    job_id, name = verify(runtime.secret_key(), signed)
    if not is_id(job_id):
        raise Problem(404, "not_found", "the export no longer exists")
    try:
        job = runtime.store.get(job_id)
    except JobNotFound:
        raise Problem(404, "not_found", "the export no longer exists") from None
    if job.expires_at is not None and job.expires_at <= utcnow():
        raise Problem(410, "expired", "the files of this export have expired")
    for artifact in job.artifacts:
        if artifact.name == name:
            return artifact
    raise Problem(404, "not_found", "the file no longer exists")


def check_file(runtime: Runtime, artifact: Artifact) -> None:
    """Before the answer starts: a missing file is a 404, a failing storage a 503 (not a
    transfer cut at its first byte)."""
    try:
        runtime.storage.size(artifact.storage_key)
    except ArtifactNotFound:
        raise Problem(404, "not_found", "the file no longer exists") from None
    except StorageError as exc:
        raise storage_problem(exc) from exc


def stream(runtime: Runtime, artifact: Artifact, start: int, end: int) -> Iterator[bytes]:
    """Bytes `start` to `end` (inclusive) of the file, opened when the first chunk is
    asked for; a transfer that reaches the last byte is counted."""
    remaining = end - start + 1
    with runtime.storage.open_read(artifact.storage_key, offset=start) as handle:
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
    if end == artifact.size - 1:
        runtime.store.count_download(artifact.job_id, artifact.name)


def get_file(signed: str, request: Request, runtime: CurrentRuntime) -> Response:
    artifact = find_artifact(runtime, signed)
    etag = f'"{artifact.sha256}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": content_disposition(artifact.name),
        "Cache-Control": "private, no-store",
        "X-Checksum-Sha256": artifact.sha256,
    }
    if_range = request.headers.get("if-range")
    wanted = request.headers.get("range") if if_range in (None, etag) else None
    span = parse_range(wanted, artifact.size)
    start, end = span or (0, artifact.size - 1)
    status = 206 if span else 200
    if span:
        headers["Content-Range"] = f"bytes {start}-{end}/{artifact.size}"
    headers["Content-Length"] = str(max(end - start + 1, 0))
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=artifact.content_type)
    if not artifact.size:
        return Response(b"", status, headers=headers, media_type=artifact.content_type)
    check_file(runtime, artifact)
    body = stream(runtime, artifact, start, end)
    return StreamingResponse(body, status, headers=headers, media_type=artifact.content_type)


FILE = {"schema": {"type": "string", "format": "binary"}}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file", "content": {"*/*": FILE}},
    206: {"description": "the range asked for", "content": {"*/*": FILE}},
    **problems(403, 404, 410, 416, 422),
}
for method in ("GET", "HEAD"):
    router.add_api_route(
        "/files/{signed}",
        get_file,
        methods=[method],
        operation_id=f"{method.lower()}_file",
        response_class=Response,
        responses=FILE_RESPONSES,
    )
