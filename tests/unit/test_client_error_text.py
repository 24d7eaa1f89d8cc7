"""The text of the client's `ApiError`: each field's reason, from the problem's `errors`,
whatever the server's detail already says."""

from __future__ import annotations

from exportd import InvalidRequest, NotFound

REASON = "Input should be greater than or equal to 0"


def problem(detail: str) -> dict[str, object]:
    return {
        "code": "invalid_params",
        "detail": detail,
        "errors": [{"loc": ["params", "rows"], "msg": REASON, "type": "greater_than_equal"}],
    }


def test_a_detail_that_names_only_the_fields_gets_their_reasons() -> None:
    """An older server's "invalid params: params.rows" becomes the field and its reason."""
    error = InvalidRequest(422, "invalid_params", "invalid params: params.rows", problem("x"))
    assert str(error) == f"422 invalid_params: invalid params: params.rows: {REASON}"


def test_a_detail_that_gives_the_reasons_is_kept_as_it_is() -> None:
    """A detail that already says each field's reason is not repeated."""
    detail = f"invalid params: params.rows: {REASON}"
    error = InvalidRequest(422, "invalid_params", detail, problem(detail))
    assert str(error) == f"422 invalid_params: {detail}"


def test_where_a_field_came_from_is_left_out() -> None:
    """FastAPI's `body` / `query` prefix is not part of the field's name."""
    body = {"errors": [{"loc": ["query", "limit"], "msg": "too big"}, {"loc": [], "msg": "x"}]}
    error = InvalidRequest(422, "validation_error", "invalid request", body)
    assert error.field_errors == [("limit", "too big"), ("request", "x")]


def test_only_a_404_names_the_request_in_its_text() -> None:
    """The URL that answered is part of a 404's text; every error keeps it as `url`."""
    missing = NotFound(404, "not_found", "Not Found", {}, method="GET", url="http://h/x")
    invalid = InvalidRequest(422, "bad", "no", {}, method="POST", url="http://h/y")
    assert str(missing) == "404 not_found: Not Found (GET http://h/x)"
    assert (str(invalid), invalid.url) == ("422 bad: no", "http://h/y")
