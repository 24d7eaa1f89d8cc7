"""The create form: fields generated from an exporter's params JSON Schema (as
`GET /v1/exporters` gives it), the submitted form turned back into an `ExportRequest`,
and the API's `422` field errors (`errors[].loc`) placed next to the fields they name.

Scalars become inputs (text, number, checkbox, or a select for an `enum`); anything
else (objects, arrays, references) a JSON text area. Inputs are sent to the exporter's
model as typed (a numeric input as a JSON number, as an API client would send it), so
the messages are the API's own (a blank input is left out: the default applies)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pydantic

from exportd.api.schemas import ExportRequest

Kind = Literal["text", "integer", "number", "boolean", "select", "json"]
NO_DEFAULT: Any = object()


@dataclass
class FormField:
    name: str
    label: str
    kind: Kind
    description: str | None = None
    required: bool = False
    default: Any = NO_DEFAULT
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    value: str = ""
    """What the input shows: the submitted text, else the default."""
    errors: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"param-{self.name}"

    @property
    def checked(self) -> bool:
        return self.value == "true"

    @property
    def placeholder(self) -> str:
        if self.default is NO_DEFAULT or self.default is None or self.kind != "json":
            return ""
        return orjson.dumps(self.default).decode()


class FormErrors(Exception):
    """What to show next to the fields, and above them (`general`)."""

    def __init__(self, fields: dict[str, list[str]], general: list[str]) -> None:
        super().__init__("; ".join(general) or "invalid form")
        self.fields, self.general = fields, general


def fields_for(schema: Mapping[str, Any]) -> list[FormField]:
    """One field per property of an object schema, in the schema's order."""
    required = set(schema.get("required", ()))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        fields.append(_field(name, prop, name in required))
    return fields


def _field(name: str, prop: Mapping[str, Any], required: bool) -> FormField:
    inner = _without_null(prop)
    kind: Kind = "json"
    choices: tuple[str, ...] = ()
    if "enum" in inner and all(isinstance(v, str) for v in inner["enum"]):
        kind, choices = "select", tuple(inner["enum"])
    elif inner.get("type") in ("string", "integer", "number", "boolean"):
        kind = "text" if inner["type"] == "string" else inner["type"]
    found = FormField(
        name=name,
        label=str(prop.get("title") or name),
        kind=kind,
        description=prop.get("description"),
        required=required,
        default=prop.get("default", NO_DEFAULT),
        choices=choices,
        minimum=inner.get("minimum"),
        maximum=inner.get("maximum"),
    )
    found.value = _shown(found.default, kind)
    return found


def _without_null(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """`anyOf: [X, {type: null}]` (an optional value) read as X."""
    options = prop.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**prop, **rest[0]}
    return prop


def _shown(default: Any, kind: Kind) -> str:
    if default is NO_DEFAULT or default is None:
        return ""
    if kind == "boolean":
        return "true" if default else "false"
    if kind == "json":
        return ""
    return str(default)


def read_params(
    fields: Sequence[FormField], form: Mapping[str, list[str]]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The params the form asks for, and the errors of text areas that are not JSON
    (left out of the params); sets each field's `value` to what was submitted."""
    params: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for f in fields:
        submitted = form.get(f.id, [])
        raw = submitted[-1] if submitted else ""
        f.value = raw
        if f.kind == "boolean":
            f.value = "true" if raw == "true" else "false"
            params[f.name] = f.value == "true"
        elif raw.strip() == "":
            continue
        elif f.kind == "json":
            try:
                params[f.name] = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                errors[f.id] = [f"not valid JSON: {exc}"]
        elif f.kind in ("integer", "number"):
            number = form_number(raw, whole=f.kind == "integer")
            if number is None:
                errors[f.id] = ["not a whole number" if f.kind == "integer" else "not a number"]
            else:
                params[f.name] = number
        else:
            params[f.name] = raw
    return params, errors


def form_number(raw: str, *, whole: bool) -> int | float | None:
    """The number typed into a numeric input (a form sends text), or None when it is not
    one: the model then judges the number itself (its range), as it would in JSON."""
    text = raw.strip()
    try:
        number = int(text) if whole else float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def check_params(model: type[pydantic.BaseModel], params: dict[str, Any]) -> dict[str, list[str]]:
    """The model's own errors for `params`, placed (used when the form cannot be sent as
    it is, so every field's error shows at once)."""
    try:
        model.model_validate(params)
    except pydantic.ValidationError as exc:
        return place([{"loc": ["params", *e["loc"]], "msg": e["msg"]} for e in exc.errors()])
    return {}


TOP_FIELDS = ("format", "compression", "filename", "max_attempts")


def build_request(
    exporter: str, params: dict[str, Any], form: Mapping[str, list[str]]
) -> ExportRequest:
    """The `ExportRequest` of the form; raises `FormErrors` with the model's messages."""
    body: dict[str, Any] = {"exporter": exporter, "params": params}
    for name in TOP_FIELDS:
        value = (form.get(f"field-{name}") or [""])[-1].strip()
        if value:
            body[name] = value
    if "max_attempts" in body:
        number = form_number(body["max_attempts"], whole=True)
        if number is None:
            raise FormErrors({"field-max_attempts": ["not a whole number"]}, [])
        body["max_attempts"] = number
    try:
        return ExportRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        raise FormErrors(place([_loc_msg(e) for e in exc.errors()]), []) from exc


def _loc_msg(error: Mapping[str, Any]) -> dict[str, Any]:
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", "")}


def place(errors: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Problem errors (`loc`, `msg`) by the id of the input they name: `params.x...` is
    the input of param `x` (a deeper path is named in the message), else the top-level
    field; anything unplaceable goes under `""`."""
    placed: dict[str, list[str]] = {}
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        msg = str(error.get("msg", "invalid"))
        if loc[:1] == ["body"]:
            loc = loc[1:]
        if len(loc) >= 2 and loc[0] == "params":
            key, rest = f"param-{loc[1]}", loc[2:]
        elif loc and loc[0] in TOP_FIELDS:
            key, rest = f"field-{loc[0]}", loc[1:]
        else:
            key, rest = "", loc
        placed.setdefault(key, []).append(f"{'.'.join(rest)}: {msg}" if rest else msg)
    return placed
