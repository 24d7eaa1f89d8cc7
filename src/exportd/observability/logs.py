"""Logging: the standard library's records, rendered by structlog.

exportd logs with the standard library (`logging.getLogger(__name__)`), so it stays a
polite library inside someone else's application. The commands call
`configure_logging`, which puts one handler on the root logger whose structlog formatter
adds what is bound in context variables (`job_context` in the worker: `job_id`,
`attempt`, `owner`, `exporter`, `worker_id`; the API middleware: `request_id`), the
level, the logger's name, a UTC timestamp and any `extra=` fields, then renders the line:

- `json`: one JSON object a line, for log pipelines;
- `console`: aligned and coloured, for people at a terminal;
- `plain`: `timestamp LEVEL logger: message key=value ...` lines;
- `auto` (the default): `console` on a terminal, `plain` otherwise.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

import structlog
from structlog.types import EventDict, Processor

if TYPE_CHECKING:
    from exportd.jobs import Job

QUIET = ("weasyprint", "fontTools", "alembic", "httpx", "httpcore", "PIL", "pydyf", "asyncio")
"""Libraries whose INFO lines (WeasyPrint's steps, fontTools' subsetting) say nothing an
operator needs: they log warnings and errors only."""

BARE = re.compile(r"^[^\s\"=]+$")


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (and replaces when called again)."""


def resolve_format(fmt: str, stream: TextIO) -> str:
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "plain"


def plain_line(_logger: object, _name: str, event_dict: EventDict) -> str:
    """`timestamp LEVEL logger: event key=value ...` (values with spaces, quotes or `=`
    in JSON quotes), then the traceback, if any, on the lines below."""
    fields = dict(event_dict)
    head = "{} {} {}: {}".format(
        fields.pop("timestamp", "-"),
        str(fields.pop("level", "-")).upper(),
        fields.pop("logger", "-"),
        fields.pop("event", ""),
    )
    exception = fields.pop("exception", None)
    pairs = [f"{key}={_bare(value)}" for key, value in fields.items()]
    line = " ".join([head, *pairs])
    return f"{line}\n{exception}" if exception else line


def _bare(value: object) -> str:
    text = str(value)
    return text if BARE.match(text) else json.dumps(text, ensure_ascii=False)


def _without_formatter_fields(_logger: object, _name: str, event_dict: EventDict) -> EventDict:
    """Drop what other handlers' formatters leave on a record (`message`, `asctime`):
    they are not `extra=` fields."""
    if event_dict.get("_from_structlog") is False:
        for key in ("message", "asctime"):
            event_dict.pop(key, None)
    return event_dict


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _without_formatter_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def _renderers(fmt: str) -> list[Processor]:
    if fmt == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    if fmt == "console":
        return [structlog.dev.ConsoleRenderer(colors=True)]
    if fmt == "plain":
        return [structlog.processors.format_exc_info, plain_line]
    raise ValueError(f"unknown log format {fmt!r} (use json, console, plain or auto)")


def configure_logging(
    fmt: str = "auto", level: int | str = logging.INFO, *, stream: TextIO | None = None
) -> None:
    """Send every log record (exportd's, libraries', warnings, uncaught exceptions) to
    `stream` (stderr) in `fmt`, at `level` and above."""
    stream = stream or sys.stderr
    chosen = resolve_format(fmt, stream)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderers(chosen),
        ],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("exportd").critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("exportd").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


@contextmanager
def job_context(job: Job) -> Iterator[None]:
    """Within it, every line logged by this thread (or tasks it starts) names the job's
    attempt: `job_id`, `attempt`, `owner`, `exporter` and `worker_id` (the lease holder)."""
    with structlog.contextvars.bound_contextvars(
        job_id=job.id,
        attempt=job.attempt,
        owner=job.owner,
        exporter=job.exporter,
        worker_id=job.lease_owner,
    ):
        yield


__all__ = ["QUIET", "configure_logging", "job_context", "resolve_format"]
