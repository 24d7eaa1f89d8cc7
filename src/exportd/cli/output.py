"""Where `exportd export` and `exportd jobs download` put the file. `-o` is checked
before anything is asked of a server or a job is created: a file in an existing,
writable directory (an existing file only with `--force`), an existing directory to
put the file in under its own name, or `-` for stdout (only verified bytes are
written there: the file is received into a temporary directory first)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from exportd.cli.session import Jobs
    from exportd.client import DownloadResult, Job

OUTPUT_HELP = (
    "A file to write, an existing directory to write the file into under its own "
    "name, or - for stdout [default: the current directory]."
)
FORCE_HELP = "Overwrite the output file if it exists."


@dataclass(frozen=True)
class Target:
    """A checked `-o`: `path` is None for stdout."""

    path: Path | None
    directory: bool
    force: bool

    @property
    def to_stdout(self) -> bool:
        return self.path is None

    def file_for(self, job: Job, name: str | None) -> Path:
        """The file this target means for the job's file `name` (or its only one),
        refused when it exists and `--force` was not given."""
        from exportd.client._core import pick_artifact

        assert self.path is not None
        if not self.directory:
            return self.path
        artifact = pick_artifact(job, name)
        if artifact is None:
            names = ", ".join(a.name for a in job.artifacts)
            message = f"the export has several files: pick one of {names}"
            raise click.BadParameter(message, param_hint="'--name'")
        path = self.path / Path(artifact.name).name
        _refuse_existing(path, self.force, str(path))
        return path


def check_target(output: str | None, *, force: bool) -> Target:
    """Check `-o` now (a usage error, exit 2, if it cannot be written)."""
    if output == "-":
        return Target(None, directory=False, force=force)
    raw = output or "."
    path = Path(raw)
    if path.is_dir() or raw.endswith(("/", os.sep)):
        if not path.is_dir():
            raise _bad(f"there is no directory {raw!r}")
        _check_writable(path, raw)
        return Target(path, directory=True, force=force)
    parent = path.parent
    if not parent.is_dir():
        raise _bad(f"there is no directory {str(parent)!r} to write {raw!r} into")
    _check_writable(parent, str(parent))
    _refuse_existing(path, force, raw)
    return Target(path, directory=False, force=force)


def _refuse_existing(path: Path, force: bool, shown: str) -> None:
    if path.exists() and not path.is_file():
        raise _bad(f"{shown!r} exists and is not a regular file (use -o - for stdout)")
    if path.exists() and not force:
        raise _bad(f"{shown!r} exists; pass --force to overwrite it")


def _check_writable(directory: Path, shown: str) -> None:
    """Create and remove a file there: the only test that also holds for root and for
    read-only file systems."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".exportd-check-"):
            pass
    except OSError as exc:
        raise _bad(f"cannot write in {shown!r}: {exc.strerror or exc}") from None


def _bad(message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint="'-o' / '--output'")


def save(
    jobs: Jobs,
    job: Job,
    target: Target,
    name: str | None,
    on_progress: Callable[[int, int | None], None],
) -> DownloadResult:
    """Download the job's file to `target` (verified); to stdout through a temporary
    directory. Returns where it was received."""
    if not target.to_stdout:
        path = target.file_for(job, name)
        return jobs.download(job.id, path, name=name, on_progress=on_progress)
    with tempfile.TemporaryDirectory(prefix="exportd-") as folder:
        result = jobs.download(job.id, folder + os.sep, name=name, on_progress=on_progress)
        with open(result.path, "rb") as received:
            shutil.copyfileobj(received, sys.stdout.buffer, 1024 * 1024)
        sys.stdout.buffer.flush()
    return result
