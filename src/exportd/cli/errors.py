"""How a command says what went wrong: the reason (each invalid field's, the URL that
answered), what to do about it when that is known, and the exit code."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from exportd.client import ApiError, ClientError, TransportError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

NOT_REACHED = ("connection refused", "could not connect", "timed out connecting")


def fail(exc: ClientError, base_url: str | None = None) -> NoReturn:
    """Print what went wrong and exit: 2 for a request the server calls invalid, else 1."""
    from exportd.client import InvalidRequest

    click.echo("\n".join(describe(exc, base_url)), err=True)
    sys.exit(EXIT_USAGE if isinstance(exc, InvalidRequest) else EXIT_FAILED)


def describe(exc: ClientError, base_url: str | None = None) -> list[str]:
    """The lines that tell the user about `exc`, starting with `error: `."""
    from exportd.client import ApiError, TransportError

    if isinstance(exc, TransportError):
        return _transport(exc)
    if isinstance(exc, ApiError):
        return _answer(exc, base_url)
    return [f"error: {exc}"]


def _transport(exc: TransportError) -> list[str]:
    lines = [f"error: {exc}"]
    if exc.reason in NOT_REACHED:
        lines.append(
            "hint: is the server running? Start one with `exportd serve`, or leave out "
            "--url and EXPORTD_URL to work on the local job store in this process."
        )
    return lines


def _answer(exc: ApiError, base_url: str | None) -> list[str]:
    fields = exc.field_errors
    if len(fields) == 1:
        lines = [f"error: {exc.code}: {fields[0][0]}: {fields[0][1]}"]
    elif fields:
        summary = exc.detail.partition(":")[0].strip() or "invalid request"
        lines = [f"error: {exc.code}: {summary}:", *(f"  {f}: {msg}" for f, msg in fields)]
    else:
        lines = [f"error: {exc.code}: {exc.detail}"]
    if exc.status in (401, 403, 404) and exc.url:
        lines[0] += f" ({exc.method} {exc.url} answered {exc.status})"
    return lines + _hints(exc, base_url)


def _hints(exc: ApiError, base_url: str | None) -> list[str]:
    if exc.status == 401:
        return [
            "hint: set EXPORTD_TOKEN (or --token) to a token of this server. "
            "`exportd token create --owner NAME`, run where the server runs, makes one "
            "(`exportd serve` prints an admin token on its first start)."
        ]
    if exc.status == 404 and (not exc.problem or exc.detail.lower() == "not found"):
        where = base_url or "the URL"
        return [f"hint: is {where} (--url / EXPORTD_URL) the address of an exportd server?"]
    return []
