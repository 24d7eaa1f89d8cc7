"""What `exportd` says when the input is wrong or the server cannot be used, through a
real server and in-process alike: each field's reason, the params and exporters there
are, the URL that answered, what to do next; exit 2 for bad input, 1 otherwise, and no
job left behind by a refused request."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import free_port
from exportd import Client
from support.cli import Served, base_env, either_env, exportd, served

pytestmark = pytest.mark.slow
__all__ = ["either_env", "served"]

HTTP_CLASS_NAMES = ("ConnectError", "HTTPStatusError", "UnsupportedProtocol", "httpx")
BAD_PARAMS = [
    (["rows=-1"], "params.rows: Input should be greater than or equal to 0"),
    (["rows=ten"], "params.rows: Input should be a number, not a string"),
    (["row=10"], "params.row: unknown parameter; known: rows, seed, columns"),
]


@pytest.mark.parametrize(("pairs", "reason"), BAD_PARAMS)
def test_bad_params_say_each_fields_reason(
    either_env: dict[str, str], tmp_path: Path, pairs: list[str], reason: str
) -> None:
    """`-p rows=-1`, `rows=ten` and an unknown `row=10` exit 2 with the field's reason."""
    args = [arg for pair in pairs for arg in ("-p", pair)]
    result = exportd("export", "synthetic", *args, env=either_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"error: invalid_params: {reason}" in result.stderr
    assert "Traceback" not in result.stderr


def test_several_bad_params_are_listed_one_a_line(
    either_env: dict[str, str], tmp_path: Path
) -> None:
    """Two bad params: one line for each, under the error."""
    result = exportd(
        "export", "synthetic", "-p", "rows=-1", "-p", "row=3", env=either_env, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    start = lines.index("error: invalid_params: invalid params:")
    assert sorted(lines[start + 1 : start + 3]) == [
        "  params.row: unknown parameter; known: rows, seed, columns",
        "  params.rows: Input should be greater than or equal to 0",
    ]


def test_an_unknown_exporter_lists_the_available_ones(
    either_env: dict[str, str], tmp_path: Path
) -> None:
    """An unknown exporter exits 2 and names the exporters there are."""
    result = exportd("export", "no_such_exporter", env=either_env, cwd=tmp_path)
    assert result.returncode == 2
    line = next(x for x in result.stderr.splitlines() if x.startswith("error: unknown_exporter"))
    available = line.partition("available: ")[2].split(", ")
    assert {"document", "sql", "synthetic"} <= set(available)


def test_a_refused_request_leaves_no_job(served: Served, tmp_path: Path) -> None:
    """Bad params are refused before a job exists."""
    with Client(served.url, served.token) as client:
        before = {job.id for job in client.iter_jobs()}
        exportd("export", "synthetic", "-p", "rows=-1", env=served.env(), cwd=tmp_path)
        assert {job.id for job in client.iter_jobs()} == before


def test_connection_refused_names_the_url_and_suggests_serve(tmp_path: Path) -> None:
    """Nothing listening: the URL, "connection refused", and `exportd serve` to start one."""
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["export", "synthetic"], ["jobs", "list"]):
        result = exportd(*args, env=base_env(EXPORTD_URL=url), cwd=tmp_path)
        assert result.returncode == 1
        assert f"error: cannot reach {url}: connection refused" in result.stderr
        assert "`exportd serve`" in result.stderr
        assert not any(name in result.stderr for name in HTTP_CLASS_NAMES)


def test_a_404_shows_the_url_that_answered(served: Served, tmp_path: Path) -> None:
    """A base URL with a wrong path: the 404 names the request and asks about the URL."""
    env = served.env(EXPORTD_URL=f"{served.url}/api")
    result = exportd("jobs", "list", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"(GET {served.url}/api/v1/exports?limit=20 answered 404)" in result.stderr
    assert f"is {served.url}/api (--url / EXPORTD_URL) the address" in result.stderr
    missing = exportd(
        "jobs", "show", "0190aaaa-0000-7000-8000-0000000000ab", env=served.env(), cwd=tmp_path
    )
    assert "no such export job (GET " in missing.stderr
    assert "answered 404" in missing.stderr


def test_a_401_hints_at_the_token(served: Served, tmp_path: Path) -> None:
    """A wrong token: 401, and how to set and make one."""
    result = exportd("jobs", "list", env=served.env(EXPORTD_TOKEN="wrong"), cwd=tmp_path)
    assert result.returncode == 1
    assert "error: unauthorized: the token is not valid" in result.stderr
    assert "EXPORTD_TOKEN" in result.stderr
    assert "exportd token create" in result.stderr


def test_a_url_without_scheme_is_told_so(tmp_path: Path) -> None:
    """`EXPORTD_URL=localhost:8000`: the URL must start with http://."""
    result = exportd("jobs", "list", env=base_env(EXPORTD_URL="localhost:8000"), cwd=tmp_path)
    assert result.returncode == 1
    assert "the URL must start with http:// or https://" in result.stderr
    assert not any(name in result.stderr for name in HTTP_CLASS_NAMES)
