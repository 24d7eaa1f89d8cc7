"""Manifests and zip bundles.

A manifest (`manifest.json`) lists the files of one export: name, size, sha256, rows and
content type of each, with the job id and the export time. A bundle is one zip holding
the files and their manifest; the zip is written as a stream (data descriptors, ZIP64
when needed), so it never has to be seekable or held in memory."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

MANIFEST_NAME = "manifest.json"
MANIFEST_TYPE = "application/json"
ZIP_TYPE = "application/zip"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class FileEntry:
    """One finished file of an export, as a manifest lists it."""

    name: str
    size: int
    sha256: str
    rows: int | None
    content_type: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "rows": self.rows,
            "content_type": self.content_type,
        }


def manifest_bytes(job_id: str, exported_at: datetime, files: Iterable[FileEntry]) -> bytes:
    entries = [entry.as_json() for entry in files]
    document = {
        "job_id": job_id,
        "exported_at": exported_at.isoformat(),
        "files": entries,
        "total_rows": sum(e["rows"] or 0 for e in entries),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def write_zip(
    target: Any, members: Iterable[tuple[FileEntry, Path, bool]], manifest: bytes
) -> None:
    """Write a zip into the write-only file object `target`: each member's file (deflated
    when its flag says so, else stored as it is), then `manifest.json`."""
    with zipfile.ZipFile(target, mode="w", allowZip64=True) as archive:
        for entry, path, deflate in members:
            info = zipfile.ZipInfo(entry.name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=True) as out:
                shutil.copyfileobj(source, out, 1 << 20)
        info = zipfile.ZipInfo(MANIFEST_NAME, date_time=FIXED_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        archive.writestr(info, manifest)
