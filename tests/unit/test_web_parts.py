"""The web page's pure parts (no I/O): the form generated from a JSON Schema and read
back, where the API's field errors go, text formatting, CSRF tokens, the HTTPS decision
behind the cookie's Secure flag, the timeline, and how a job's card reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field
from starlette.requests import Request

from exportd.api.web import sessions, text
from exportd.api.web.forms import check_params, fields_for, place, read_params
from exportd.api.web.templating import environment
from exportd.api.web.users import WebUser, local_path
from exportd.api.web.views import job_view, timeline
from exportd.config import Settings
from exportd.jobs import Event, Job, NewJob, Progress, Status, utcnow
from exportd.store.rows import job_from_mapping


class Params(BaseModel):
    rows: int = Field(default=10, ge=0, description="how many")
    ratio: float | None = None
    name: str
    size: str = Field(default="A4", json_schema_extra={"enum": ["A4", "letter"]})
    gift: bool = True
    columns: dict[str, str] = Field(default_factory=dict)


def test_fields_follow_the_schemas_types_defaults_and_descriptions() -> None:
    """Each property becomes the matching input, with its label, default, description
    and bounds; optional values and objects are handled."""
    fields = {f.name: f for f in fields_for(Params.model_json_schema())}
    assert [f.kind for f in fields.values()] == [
        "integer",
        "number",
        "text",
        "select",
        "boolean",
        "json",
    ]
    rows = fields["rows"]
    assert (rows.label, rows.value, rows.minimum, rows.description) == ("Rows", "10", 0, "how many")
    assert fields["name"].required and not rows.required
    assert fields["size"].choices == ("A4", "letter") and fields["size"].value == "A4"
    assert fields["gift"].checked and fields["ratio"].value == ""


def form(**values: str | list[str]) -> dict[str, list[str]]:
    return {f"param-{k}": v if isinstance(v, list) else [v] for k, v in values.items()}


def test_the_form_reads_back_as_params() -> None:
    """Blank inputs are left out (the default applies), text goes to the model as typed,
    a numeric input as a number, a checkbox's hidden "false" is overridden when it is
    ticked, JSON is parsed."""
    fields = fields_for(Params.model_json_schema())
    params, errors = read_params(
        fields, form(rows="", name="x", gift=["false", "true"], columns='{"a": "b"}')
    )
    assert errors == {}
    assert params == {"name": "x", "gift": True, "columns": {"a": "b"}}
    params, _ = read_params(fields, form(rows="5", name="x", gift=["false"]))
    assert params == {"rows": 5, "name": "x", "gift": False}
    assert Params.model_validate(params).rows == 5


def test_a_numeric_input_that_is_not_a_number_is_an_error_of_its_field() -> None:
    """ "5x" or "1.5" in a whole-number input is reported on that input and left out; a
    number out of range goes to the model, whose message says the range."""
    fields = fields_for(Params.model_json_schema())
    for typed in ("5x", "1.5", "nan"):
        params, errors = read_params(fields, form(rows=typed, name="x"))
        assert "rows" not in params
        assert errors == {"param-rows": ["not a whole number"]}
    params, errors = read_params(fields, form(rows=" -3 ", name="x"))
    assert errors == {} and params["rows"] == -3
    assert "greater than or equal to 0" in check_params(Params, params)["param-rows"][0]


def test_json_that_does_not_parse_is_an_error_of_its_field() -> None:
    """A text area that is not JSON is reported on its own input and left out."""
    fields = fields_for(Params.model_json_schema())
    params, errors = read_params(fields, form(name="x", columns="{nope"))
    assert "columns" not in params
    assert list(errors) == ["param-columns"]
    assert errors["param-columns"][0].startswith("not valid JSON")


def test_problem_errors_land_next_to_the_inputs_they_name() -> None:
    """`params.x` goes to param x (deeper paths named in the message), top-level fields
    to theirs, anything else above the form."""
    placed = place(
        [
            {"loc": ["params", "rows"], "msg": "too small"},
            {"loc": ["params", "columns", "a", "type"], "msg": "bad type"},
            {"loc": ["body", "filename"], "msg": "bad name"},
            {"loc": ["priority"], "msg": "out of range"},
        ]
    )
    assert placed == {
        "param-rows": ["too small"],
        "param-columns": ["a.type: bad type"],
        "field-filename": ["bad name"],
        "": ["priority: out of range"],
    }
    assert check_params(Params, {"rows": -1}) == {
        "param-rows": ["Input should be greater than or equal to 0"],
        "param-name": ["Field required"],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "?"), (0, "0"), (1234567, "1,234,567")],
)
def test_counts(value: int | None, expected: str) -> None:
    """Row counts are grouped by thousands; unknown is a question mark."""
    assert text.count(value) == expected


def test_rates_durations_sizes_and_percent() -> None:
    """The formats app.js mirrors: rates keep a decimal below 10, durations round up."""
    assert text.rate(9.25, "rows") == "9.2 rows/s" and text.rate(1234.5, "rows") == "1,234 rows/s"
    assert text.rate(None, "rows") == ""
    assert [text.duration(s) for s in (0.2, 59, 61, 3600, 7322)] == [
        "1 s",
        "59 s",
        "1 min 1 s",
        "1 h 0 min",
        "2 h 2 min",
    ]
    assert [text.size(n) for n in (5, 2048, 3 * 1024**3)] == ["5 B", "2.0 KiB", "3.0 GiB"]
    assert text.percent(99.99) == "99%" and text.percent(None) == ""


def test_the_csrf_token_belongs_to_its_session() -> None:
    """The token is stable for a session, differs between sessions, and is compared
    exactly (a missing token never matches)."""
    token = sessions.csrf_token("exs_a")
    assert token == sessions.csrf_token("exs_a") != sessions.csrf_token("exs_b")
    assert sessions.csrf_matches("exs_a", token)
    assert not sessions.csrf_matches("exs_b", token)
    assert not sessions.csrf_matches("exs_a", None) and not sessions.csrf_matches("exs_a", "")


def request(scheme: str = "http", client: str = "127.0.0.1", proto: str | None = None) -> Request:
    headers = [(b"x-forwarded-proto", proto.encode())] if proto else []
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": scheme,
        "client": (client, 5000),
        "headers": headers,
        "path": "/",
        "server": ("exportd", 80),
        "query_string": b"",
    }
    return Request(scope)


def test_https_is_the_connections_or_a_trusted_proxys_word() -> None:
    """X-Forwarded-Proto counts only from a peer inside EXPORTD_TRUSTED_PROXIES."""
    plain, trusting = Settings(), Settings(trusted_proxies="10.0.0.0/8, 127.0.0.1")
    assert sessions.is_https(request("https"), plain)
    assert not sessions.is_https(request(proto="https"), plain)
    assert sessions.is_https(request(proto="https"), trusting)
    assert sessions.is_https(request(client="10.1.2.3", proto="https, http"), trusting)
    assert not sessions.is_https(request(client="192.168.0.9", proto="https"), trusting)
    assert not sessions.is_https(request(proto="http"), trusting)
    with pytest.raises(ValueError, match=r"not an IP address or network: 'proxy\.local'"):
        Settings(trusted_proxies="127.0.0.1, proxy.local")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/exports/1?x=2", "/exports/1?x=2"),
        ("//evil.example", "/"),
        ("https://x", "/"),
        ("/\\x", "/"),
    ],
)
def test_redirects_stay_on_this_site(target: str, expected: str) -> None:
    """Only a path on this site is followed after an action or a sign-in."""
    assert local_path(target) == expected


def event(id_: int, type_: str, **data: Any) -> Event:
    return Event(id_, "j", "alice", type_, data, utcnow())


def test_runs_of_progress_events_fold_into_one_line() -> None:
    """The timeline keeps every transition and folds each run of progress events into
    one line with its count and last values."""
    moments = timeline(
        [
            event(1, "created"),
            event(2, "started", attempt=1),
            event(3, "progress", done=10),
            event(4, "progress", done=20),
            event(5, "retry_scheduled", attempt=1),
            event(6, "progress", done=5),
        ]
    )
    assert [(m.type, m.count) for m in moments] == [
        ("created", 1),
        ("started", 1),
        ("progress", 2),
        ("retry_scheduled", 1),
        ("progress", 1),
    ]
    assert moments[2].data == {"done": 20} and moments[2].ids == [3, 4]


def a_job(**changes: Any) -> Job:
    new = NewJob(owner="alice", exporter="slow", params={}, max_attempts=3)
    now = utcnow()
    base = {c: None for c in ("lease_owner", "lease_expires_at", "error_code", "error_message")}
    job = job_from_mapping(
        {
            **base,
            "id": new.id,
            "owner": "alice",
            "exporter": "slow",
            "params": {},
            "format": "csv",
            "compression": "none",
            "status": "queued",
            "priority": 0,
            "attempt": 0,
            "max_attempts": 3,
            "run_after": now,
            "cancel_requested": False,
            "progress_done": 0,
            "progress_total": None,
            "progress_unit": "rows",
            "progress_message": None,
            "error_retryable": None,
            "max_runtime_seconds": 60.0,
            "filename": None,
            "batch_id": None,
            "ttl_seconds": None,
            "options": {},
            "created_at": now,
            "started_at": None,
            "finished_at": None,
            "updated_at": now,
            "claim_id": None,
            "expires_at": None,
            "labels": {},
            "notify": None,
            "manual_retries": 0,
            "created_by": None,
        }
    )
    return replace(job, **changes)


def render_card(job: Job) -> str:
    user = WebUser("alice", False, "token", "secret")
    return environment.get_template("_card.html").render(job=job_view(job), user=user, back="/")


def test_a_job_waiting_for_its_retry_says_when() -> None:
    """A queued job past its first attempt shows attempt n/m and its next try; only
    Cancel and Delete apply."""
    later = utcnow() + timedelta(minutes=5)
    html = render_card(a_job(attempt=1, run_after=later))
    assert "1/3, next try" in html and f'datetime="{text.iso(later)}"' in html
    assert ">Cancel<" in html and ">Delete<" in html and ">Retry<" not in html


def test_a_running_jobs_card_shows_its_progress_and_no_delete() -> None:
    """A running job shows percent, rows and step; it can be cancelled, not deleted."""
    job = a_job(
        status=Status.RUNNING,
        attempt=1,
        started_at=utcnow() - timedelta(seconds=10),
        progress=Progress(done=250, total=1000, message="batch 3 of 10"),
    )
    html = render_card(job)
    assert 'value="25.0"' in html and ">25%<" in html and "250 / 1,000 rows" in html
    assert "batch 3 of 10" in html and ">Cancel<" in html and ">Delete<" not in html
