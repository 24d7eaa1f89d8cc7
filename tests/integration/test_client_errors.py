"""What the API and the Python client say when a request is wrong or cannot be made:
each invalid field with its reason, the names an unknown param could have been, the
exporters there are, the URL that answered a 404, a refused connection in words."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import exportd
from conftest import LiveServer, free_port

StartServer = Callable[..., LiveServer]
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For what the job store cannot change (run once)."""

ROWS_REASON = "Input should be greater than or equal to 0"
KNOWN = "unknown parameter; known: rows, seed, columns"


@sqlite_only
def test_a_bad_params_problem_gives_each_fields_reason(live_server: StartServer) -> None:
    """A 422 for bad params names each field with its reason, in `errors` and in the
    detail; an unknown name is told with the names the exporter takes."""
    live = live_server(workers=False)
    answer = live.client(live.admin_token).post(
        "/v1/exports", json={"exporter": "synthetic", "params": {"rows": -1, "row": 10}}
    )
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["code"] == "invalid_params"
    reasons = {(".".join(map(str, e["loc"])), e["msg"]) for e in problem["errors"]}
    assert reasons == {("params.rows", ROWS_REASON), ("params.row", KNOWN)}
    assert f"params.rows: {ROWS_REASON}" in problem["detail"]
    assert f"params.row: {KNOWN}" in problem["detail"]


@sqlite_only
def test_an_unknown_nested_param_names_the_known_ones_there(live_server: StartServer) -> None:
    """An unknown key inside a column spec lists the keys a column spec takes."""
    live = live_server(workers=False)
    answer = live.client(live.admin_token).post(
        "/v1/exports",
        json={"exporter": "synthetic", "params": {"columns": {"n": {"typ": "int"}}}},
    )
    messages = [e["msg"] for e in answer.json()["errors"] if e["type"] == "extra_forbidden"]
    assert messages == ["unknown parameter; known: type, options, min, max, null_fraction"]


@sqlite_only
def test_an_unknown_exporter_lists_the_available_ones(live_server: StartServer) -> None:
    """The 422 for an unknown exporter names every exporter the server has."""
    live = live_server(workers=False)
    answer = live.client(live.admin_token).post("/v1/exports", json={"exporter": "nope"})
    problem = answer.json()
    assert (answer.status_code, problem["code"]) == (422, "unknown_exporter")
    assert {"synthetic", "sql", "document", "slow"} <= set(problem["available"])
    assert "available: " in problem["detail"]
    assert "synthetic" in problem["detail"].partition("available: ")[2]


@sqlite_only
def test_the_client_error_gives_each_fields_reason(live_server: StartServer) -> None:
    """`InvalidRequest` carries `(field, reason)` pairs and its text says them all."""
    live = live_server(workers=False)
    with (
        exportd.Client(live.url, live.admin_token) as client,
        pytest.raises(exportd.InvalidRequest) as caught,
    ):
        client.create("synthetic", {"rows": "ten", "row": 10})
    assert dict(caught.value.field_errors) == {
        "params.rows": "Input should be a number, not a string",
        "params.row": KNOWN,
    }
    assert "params.rows: Input should be a number, not a string" in str(caught.value)
    assert f"params.row: {KNOWN}" in str(caught.value)


@sqlite_only
def test_a_404_names_the_url_that_answered(live_server: StartServer) -> None:
    """A wrong base URL gets a 404 whose text shows the request that got it."""
    live = live_server(workers=False)
    with (
        exportd.Client(f"{live.url}/api", live.admin_token) as client,
        pytest.raises(exportd.NotFound) as caught,
    ):
        client.list()
    assert caught.value.url == f"{live.url}/api/v1/exports?limit=50"
    assert f"(GET {live.url}/api/v1/exports" in str(caught.value)


def test_a_refused_connection_says_where_and_why_in_words() -> None:
    """Connection refused is told with the server's address, without httpx class names."""
    port = free_port()
    with (
        exportd.Client(f"http://127.0.0.1:{port}", "t", retries=0) as client,
        pytest.raises(exportd.TransportError) as caught,
    ):
        client.get("some-id")
    assert caught.value.reason == "connection refused"
    assert str(caught.value) == (
        f"cannot reach http://127.0.0.1:{port}: connection refused (GET /v1/exports/some-id)"
    )
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_url_without_a_scheme_is_told_so() -> None:
    """`localhost:8000` (no http://) is a message about the URL, not a protocol error."""
    with (
        exportd.Client("localhost:8000", "t", retries=0) as client,
        pytest.raises(exportd.TransportError) as caught,
    ):
        client.get("x")
    assert "must start with http:// or https://" in str(caught.value)
    assert "UnsupportedProtocol" not in str(caught.value)
