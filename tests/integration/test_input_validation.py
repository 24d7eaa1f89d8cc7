"""Bad input is refused when it is given, through a real HTTP server on SQLite and
PostgreSQL: a 4xx problem with a stable code that names the field and says why, nothing
stored, and never a 5xx or a job that fails later because of what it was given."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
import sqlalchemy as sa

from conftest import LiveServer, wait_for
from exportd.jobs import NewJob
from exportd.storage.signing import sign
from exportd.store.schema import batches, jobs

Start = Callable[..., LiveServer]
SMALL: dict[str, Any] = {"exporter": "synthetic", "params": {"rows": 2000, "seed": 1}}
ID = "0190d5a2-0000-7000-8000-000000000000"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def assert_field(body: dict[str, Any], loc: list[Any], reason: str) -> None:
    """The problem names the field at `loc` in `errors` and says why in `detail`."""
    assert [e["loc"] for e in body["errors"]] == [loc], body
    field = ".".join(str(p) for p in (loc[1:] if loc[0] in ("body", "query") else loc))
    assert f"{field}: " in body["detail"] and reason in body["detail"], body["detail"]
    assert reason in body["errors"][0]["msg"]


def stored_rows(server: LiveServer) -> tuple[int, int]:
    """(jobs, batches) in the store."""
    with server.runtime.store.engine.connect() as conn:
        counts = [
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (jobs, batches)
        ]
    return counts[0], counts[1]


def post_raw(client: httpx.Client, path: str, text: str) -> httpx.Response:
    """A JSON body as written, for what `json=` cannot send (surrogates, NaN)."""
    headers = {"content-type": "application/json"}
    return client.post(path, content=text.encode("utf-8", "surrogatepass"), headers=headers)


@pytest.fixture
def server(live_server: Start) -> LiveServer:
    return live_server(workers=False, max_ttl_seconds=3600)


@pytest.fixture
def client(server: LiveServer) -> httpx.Client:
    return server.client(server.token("alice"))


@pytest.mark.parametrize(
    ("options", "loc", "reason"),
    [
        ({"evil": 1}, ["options", "evil"], "Extra inputs are not permitted"),
        ({"max_rows_per_file": -5}, ["options", "max_rows_per_file"], "greater than or equal"),
        ({"max_bytes_per_file": 10}, ["options", "max_bytes_per_file"], "greater than or equal"),
        ({"formats": []}, ["options", "formats"], "at least 1 item"),
        ({"formats": ["csv", "csv"]}, ["options", "formats"], "each format once"),
        ({"max_rows_per_file": True}, ["options", "max_rows_per_file"], "a number"),
    ],
)
def test_bad_options_are_422_invalid_options_naming_the_field(
    server: LiveServer,
    client: httpx.Client,
    options: dict[str, Any],
    loc: list[str],
    reason: str,
) -> None:
    """Writer options are checked by the output plan at creation: each error is a 422
    `invalid_options` naming `options.<key>` with its reason, and nothing is stored."""
    body = assert_problem(
        client.post("/v1/exports", json={**SMALL, "options": options}), 422, "invalid_options"
    )
    assert_field(body, loc, reason)
    assert stored_rows(server) == (0, 0)


def test_options_the_exporter_cannot_honour_are_refused(
    server: LiveServer, client: httpx.Client
) -> None:
    """Formats an exporter does not write, and parts for a document, are 422 naming the
    field; nothing is stored."""
    body = assert_problem(
        client.post("/v1/exports", json={**SMALL, "options": {"formats": ["csv", "docx"]}}),
        422,
        "invalid_format",
    )
    assert body["detail"].startswith("options.formats: ")
    document = {"exporter": "document", "format": "html", "options": {"max_rows_per_file": 5}}
    body = assert_problem(client.post("/v1/exports", json=document), 422, "invalid_options")
    assert body["detail"].startswith("options: ")
    assert_problem(
        client.post("/v1/exports", json={**SMALL, "format": "docx"}), 422, "invalid_format"
    )
    assert stored_rows(server) == (0, 0)


def test_a_batch_with_a_bad_option_in_its_third_export_stores_nothing(
    server: LiveServer, client: httpx.Client
) -> None:
    """Batches stay all-or-nothing: a bad option in the 3rd export refuses the batch,
    names that export and stores no job and no batch."""
    bad = {**SMALL, "options": {"max_rows_per_file": 0}}
    response = client.post("/v1/batches", json={"exports": [SMALL, SMALL, bad, SMALL]})
    body = assert_problem(response, 422, "invalid_options")
    assert body["index"] == 2 and body["detail"].startswith("exports[2]: ")
    assert body["errors"][0]["loc"] == ["options", "max_rows_per_file"]
    assert stored_rows(server) == (0, 0)


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        (".", "must not be '.' or '..'"),
        ("..", "must not be '.' or '..'"),
        ("a/b.csv", "must not contain '/' or '\\'"),
        ("a\\b.csv", "must not contain '/' or '\\'"),
        ("a\x00b.csv", "must not contain NUL characters"),
        ("a\x1fb.csv", "must not contain control characters"),
        ("a\x85b.csv", "must not contain control characters"),
        ("é" * 128, "must be at most 255 bytes of UTF-8"),
        ("", "must not be empty"),
    ],
)
def test_bad_filenames_are_refused(
    server: LiveServer, client: httpx.Client, filename: str, reason: str
) -> None:
    """A file name that is not one safe path segment of at most 255 bytes is a 422
    naming `filename` with its reason; nothing is stored."""
    response = client.post("/v1/exports", json={**SMALL, "filename": filename})
    assert_field(assert_problem(response, 422, "validation_error"), ["body", "filename"], reason)
    assert stored_rows(server) == (0, 0)


def test_a_filename_of_255_bytes_is_written_and_downloaded(live_server: Start) -> None:
    """The longest allowed name (255 bytes of UTF-8) really is stored and served."""
    server = live_server()
    client = server.client(server.token("alice"))
    name = "é" * 125 + "x.csv"
    assert len(name.encode()) == 255
    job = client.post("/v1/exports", json={**SMALL, "filename": name}).json()
    done = wait_for(
        lambda: (
            (j := client.get(f"/v1/exports/{job['id']}").json())["status"] != "queued"
            and j["status"] != "running"
            and j
        ),
        what="the export",
    )
    assert done["status"] == "completed" and done["artifacts"][0]["name"] == name
    link = client.get(f"/v1/exports/{job['id']}/download").headers["location"]
    assert server.client(None).get(link).content.startswith(b'"order_id",')


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ttl_seconds", 10**30, "less than or equal to 2147483647"),
        ("ttl_seconds", 2**31, "less than or equal to 2147483647"),
        ("ttl_seconds", 3601, "less than or equal to 3600"),
        ("ttl_seconds", 59, "greater than or equal to 60"),
        ("priority", 101, "less than or equal to 100"),
        ("priority", 2**63, "less than or equal to 100"),
        ("max_attempts", 0, "greater than or equal to 1"),
        ("max_runtime_seconds", 1e300, "less than or equal to 604800"),
        ("max_runtime_seconds", 0, "greater than 0"),
        ("priority", True, "a number, not a boolean"),
        ("ttl_seconds", "600", "a number, not a string"),
    ],
)
def test_numbers_out_of_range_are_refused(
    server: LiveServer, client: httpx.Client, field: str, value: Any, reason: str
) -> None:
    """Numbers are bounded to what both databases hold (and ttl to the server's
    `max_ttl_seconds`): out of range is a 422 naming the field, nothing stored."""
    response = client.post("/v1/exports", json={**SMALL, field: value})
    assert_field(assert_problem(response, 422, "validation_error"), ["body", field], reason)
    assert stored_rows(server) == (0, 0)


def test_the_largest_allowed_ttl_is_stored(server: LiveServer, client: httpx.Client) -> None:
    """`ttl_seconds` equal to the configured maximum is accepted (the bound is inclusive)."""
    response = client.post("/v1/exports", json={**SMALL, "ttl_seconds": 3600})
    assert response.status_code == 202, response.text
    assert stored_rows(server) == (1, 0)


@pytest.mark.parametrize(
    ("text", "loc", "reason"),
    [
        ('{"exporter": "synth\\u0000etic"}', ["body", "exporter"], "NUL"),
        (
            '{"exporter": "synthetic", "params": {"seed": "\\u0000"}}',
            ["body", "params", "seed"],
            "NUL",
        ),
        (
            '{"exporter": "synthetic", "params": {"columns": {"a\\u0000": "int"}}}',
            ["body", "params", "columns", "a\x00"],
            "key must not contain NUL",
        ),
        (
            '{"exporter": "synthetic", "params": {"columns": {"\\ud800": "int"}}}',
            ["body", "params", "columns", ANY],
            "unpaired surrogates",
        ),
        (
            '{"exporter": "synthetic", "params": {"x": "\\udfff"}}',
            ["body", "params", "x"],
            "surrogates",
        ),
        ('{"exporter": "synthetic", "format": "\\ud83d"}', ["body", "format"], "surrogates"),
        (
            '{"exporter": "synthetic", "options": {"\\u0000": 1}}',
            ["body", "options", "\x00"],
            "NUL",
        ),
        (
            '{"exporter": "synthetic", "params": {"seed": NaN}}',
            ["body", "params", "seed"],
            "finite",
        ),
        (
            '{"exporter": "synthetic", "params": {"seed": 18446744073709551616}}',
            ["body", "params", "seed"],
            "64 bits",
        ),
        (
            '{"exporter": "synthetic", "params": {"x": ' + "[" * 40 + "]" * 40 + "}}",
            ["body", "params", "x", *[0] * 32],
            "nested",
        ),
    ],
)
def test_text_and_numbers_no_store_can_hold_are_refused_anywhere_in_the_body(
    server: LiveServer, client: httpx.Client, text: str, loc: list[Any], reason: str
) -> None:
    """NUL, unpaired surrogates, non-finite or over-64-bit numbers and deep nesting,
    anywhere in the body (params and options included), are a 422 at that place."""
    body = assert_problem(post_raw(client, "/v1/exports", text), 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [loc]
    assert reason in body["detail"]
    assert stored_rows(server) == (0, 0)


def test_path_ids_that_cannot_exist_are_404(server: LiveServer, client: httpx.Client) -> None:
    """Ids no job or batch can have (NUL, surrogates, other shapes) are 404 on every
    route, after authentication, without a 503 from the store."""
    for bad in ("a%00b", "%ED%A0%80", ID.upper(), ID + "0", "x" * 5000):
        base = f"/v1/exports/{bad}"
        for method, path in [
            ("GET", base),
            ("POST", f"{base}/cancel"),
            ("POST", f"{base}/retry"),
            ("DELETE", base),
            ("GET", f"{base}/events"),
            ("GET", f"{base}/download"),
            ("GET", f"/v1/batches/{bad}"),
        ]:
            assert_problem(client.request(method, path), 404, "not_found")
        assert_problem(server.client(None).get(base), 401, "unauthorized")
    assert_problem(client.get(f"/v1/exports/{ID}"), 404, "not_found")


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ({"cursor": "a\x00b"}, "cursor", "should match pattern"),
        ({"cursor": "zzz"}, "cursor", "should match pattern"),
        ({"batch_id": "\x00"}, "batch_id", "should match pattern"),
        ({"exporter": "a\x00"}, "exporter", "NUL"),
        ({"created_before": "0001-01-01T00:00:00+00:02"}, "created_before", "once in UTC"),
        ({"created_after": "9999-12-31T23:59:59-00:01"}, "created_after", "once in UTC"),
        ({"created_after": "2024-01-01T00:00:00"}, "created_after", "timezone"),
        ({"created_before": "0.5"}, "created_before", "ISO 8601"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
    ],
)
def test_query_strings_that_cannot_match_are_422(
    client: httpx.Client, query: dict[str, str], field: str, reason: str
) -> None:
    """Filters and cursors that no job can match, and timestamps without a zone or out
    of range, are a 422 naming the parameter."""
    body = assert_problem(client.get("/v1/exports", params=query), 422, "validation_error")
    assert_field(body, ["query", field], reason)


def test_download_names_and_event_positions_are_checked(client: httpx.Client) -> None:
    """A file name with NUL and an `after` past 63 bits are 422, not a store error."""
    job = client.post("/v1/exports", json=SMALL).json()
    body = assert_problem(
        client.get(f"/v1/exports/{job['id']}/download", params={"name": "a\x00"}),
        422,
        "validation_error",
    )
    assert_field(body, ["query", "name"], "NUL")
    for path in (f"/v1/exports/{job['id']}/events", "/v1/events"):
        body = assert_problem(client.get(path, params={"after": 2**63}), 422, "validation_error")
        assert_field(body, ["query", "after"], "less than or equal to 9223372036854775807")


def sse_ids(response: httpx.Response) -> Iterator[int]:
    for line in response.iter_lines():
        if line.startswith("id: "):
            yield int(line[4:])


def test_last_event_ids_that_are_not_plain_decimals_are_ignored(live_server: Start) -> None:
    """A `Last-Event-ID` that is not ASCII digits within 63 bits is ignored: the stream
    replays from the start and ends after the terminal event, never a 500 or an abort."""
    server = live_server()
    client = server.client(server.token("alice"))
    job = client.post("/v1/exports", json=SMALL).json()
    wait_for(lambda: client.get(f"/v1/exports/{job['id']}").json()["status"] == "completed")
    stored = [e.id for e in server.runtime.store.events_after(0, job_id=job["id"])]
    url = f"/v1/exports/{job['id']}/events"
    for header in ("²".encode("latin-1"), b"9" * 20, b"9223372036854775808", b"-1", b"1e3"):
        with client.stream("GET", url, headers={"Last-Event-ID": header}) as response:
            assert response.status_code == 200
            assert list(sse_ids(response)) == stored
    with client.stream("GET", url, headers={"Last-Event-ID": str(stored[0])}) as response:
        assert list(sse_ids(response)) == stored[1:]


def _forge(key: bytes, payload: bytes) -> str:
    """A link whose signature is right for `payload`, whatever the payload holds."""
    text = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    signature = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return f"{text}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_malformed_signed_links_are_403_link_invalid(live_server: Start) -> None:
    """Links with bad base64, non-JSON, wrong types, or a non-integer or huge expiry are
    a 403 `link_invalid` even when signed with the server's key; never a 500."""
    server = live_server(workers=False)
    key = server.runtime.secret_key()
    anonymous = server.client(None)
    later = int(time.time()) + 600
    payloads = [
        b"not json",
        b"\xff\xfe",
        json.dumps([ID, "a.csv", "tomorrow"]),
        json.dumps([ID, "a.csv", 1e300]),
        json.dumps([ID, "a.csv", 2**64]),
        json.dumps([ID, "a.csv", True]),
        json.dumps([ID, "a.csv"]),
        json.dumps({"job": ID}),
        json.dumps([1, "a.csv", later]),
        json.dumps([ID, None, later]),
    ]
    links = [_forge(key, p if isinstance(p, bytes) else p.encode()) for p in payloads]
    links += ["!!!." + _forge(key, b"x").split(".")[1], "abc.é", "é.abc", ".x", "a" * 5000]
    for link in links:
        assert_problem(anonymous.get(f"/v1/files/{link}"), 403, "link_invalid")
    valid = sign(key, "not-an-id\x00", "a.csv", later)
    assert_problem(anonymous.get(f"/v1/files/{valid}"), 404, "not_found")


def test_chunked_bodies_over_the_limit_are_413(live_server: Start) -> None:
    """A body without Content-Length that grows past the limit is a 413 problem (not a
    400), and nothing is stored."""
    server = live_server(workers=False, max_body_bytes=2048)
    client = server.client(server.token("alice"))
    text = json.dumps({**SMALL, "params": {"columns": {f"c{i}": "int" for i in range(400)}}})

    def chunks() -> Iterator[bytes]:
        data = text.encode()
        for start in range(0, len(data), 512):
            yield data[start : start + 512]

    response = client.post(
        "/v1/exports", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "body_too_large")
    assert stored_rows(server) == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", f"/v1/exports/{ID}", "DELETE, GET"),
        ("PATCH", "/v1/exports", "GET, POST"),
        ("POST", f"/v1/files/{ID}", "GET, HEAD"),
        ("DELETE", f"/v1/exports/{ID}/cancel", "POST"),
    ],
)
def test_405_lists_every_method_of_the_path(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    """A 405 names every method the path takes, not only the first route's."""
    response = client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


def test_synthetic_rows_are_capped_by_the_setting(live_server: Start) -> None:
    """`rows` over EXPORTD_SYNTHETIC_MAX_ROWS is a 422 naming `params.rows`, nothing is
    stored; at the cap the export is queued."""
    server = live_server(workers=False, synthetic_max_rows=10)
    client = server.client(server.token("alice"))
    response = client.post("/v1/exports", json={"exporter": "synthetic", "params": {"rows": 11}})
    body = assert_problem(response, 422, "invalid_params")
    assert_field(body, ["params", "rows"], "less than or equal to 10")
    assert stored_rows(server) == (0, 0)
    accepted = client.post("/v1/exports", json={"exporter": "synthetic", "params": {"rows": 10}})
    assert accepted.status_code == 202


def test_the_default_row_cap_refuses_ten_billion_rows(
    server: LiveServer, client: httpx.Client
) -> None:
    """By default `synthetic` refuses more than 100,000,000 rows (10^10 was ~1.8 TB)."""
    response = client.post(
        "/v1/exports", json={"exporter": "synthetic", "params": {"rows": 10**10}}
    )
    body = assert_problem(response, 422, "invalid_params")
    assert_field(body, ["params", "rows"], "less than or equal to 100000000")
    assert stored_rows(server) == (0, 0)


def test_a_job_over_the_row_cap_queued_earlier_fails_permanently(live_server: Start) -> None:
    """A synthetic job stored before the cap was lowered fails at once, not retried."""
    server = live_server(synthetic_max_rows=10)
    new = NewJob(owner="alice", exporter="synthetic", params={"rows": 11})
    job = server.runtime.store.enqueue(new)
    client = server.client(server.token("alice"))
    done = wait_for(
        lambda: (j := client.get(f"/v1/exports/{job.id}").json())["status"] == "failed" and j,
        what="the job to fail",
    )
    assert done["error"]["code"] == "invalid_params" and not done["error"]["retryable"]
    assert "params.rows" in done["error"]["message"] and done["attempt"] == 1


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"columns": {"a": "choice"}}, "Input should be"),
        ({"columns": {"a": {"type": "choice"}}}, "needs a non-empty `options` list"),
        ({"rows": True}, "Input should be a number"),
        ({"columns": {"a": {"type": "float", "min": 2000}}}, "min must not exceed max"),
        (
            {"columns": {"a": {"type": "int", "max": 1e300}}},
            "less than or equal to 1000000000000000",
        ),
        ({"columns": {"a": {"type": "int", "null_fraction": False}}}, "Input should be a number"),
    ],
)
def test_synthetic_params_that_would_fail_at_run_time_are_refused(
    server: LiveServer, client: httpx.Client, params: dict[str, Any], reason: str
) -> None:
    """A choice column without options (also the bare "choice" shorthand), a min above
    the type's default max, or bounds past 64-bit arithmetic (all used to fail the job
    when it ran) and booleans for numbers are a 422 `invalid_params`."""
    response = client.post("/v1/exports", json={"exporter": "synthetic", "params": params})
    body = assert_problem(response, 422, "invalid_params")
    assert reason in body["detail"] and body["errors"][0]["loc"][0] == "params"
    assert stored_rows(server) == (0, 0)


def test_the_openapi_documents_problems_auth_and_each_exporter(live_server: Start) -> None:
    """Every 4xx of every operation is `application/problem+json` with the Problem schema,
    token routes document 401 and the bearer scheme, and an export request is one variant
    per exporter with the server's limits (ttl, synthetic rows)."""
    server = live_server(workers=False, max_ttl_seconds=3600, synthetic_max_rows=500)
    document = server.client(None).get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert {"type", "title", "status", "code", "detail", "instance", "errors"} <= set(
        schemas["Problem"]["properties"]
    )
    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = operation["responses"]
            errors = [s for s in statuses if s.startswith("4")]
            assert errors or not path.startswith("/v1/"), f"{method} {path}"
            for status in errors:
                content = statuses[status]["content"]
                assert content == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, f"{method} {path} {status}"
            if path.startswith("/v1/") and not path.startswith("/v1/files"):
                assert operation["security"] == [{"token": []}] and "401" in statuses
    variants = [v["$ref"].rsplit("/", 1)[1] for v in schemas["ExportRequest"]["oneOf"]]
    exporters = {schemas[v]["properties"]["exporter"]["enum"][0]: schemas[v] for v in variants}
    assert {"synthetic", "sql", "document", "slow"} <= set(exporters)
    synthetic = exporters["synthetic"]["properties"]
    assert synthetic["params"]["properties"]["rows"]["maximum"] == 500
    assert synthetic["ttl_seconds"]["anyOf"][0]["maximum"] == 3600
    assert "pdf" not in synthetic["format"]["enum"] and "csv" in synthetic["format"]["enum"]
    assert "format" in exporters["document"]["required"]
