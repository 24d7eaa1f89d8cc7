"""What a params model can say about a validation error: the names it does take where an
unknown one was given, so that "params.row: unknown parameter; known: rows, seed,
columns" can be told instead of pydantic's "Extra inputs are not permitted"."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag
from pydantic_core import ErrorDetails

UNION_MEMBER = re.compile(r"(?:^|[\[ ,])(?P<name>\w+)\]?$")
"""The class a pydantic union-member location names: `Column`, or the last word of
`function-after[_check(), Column]` (a discriminated union names its member by `Tag`)."""


def error_message(model: type[BaseModel], error: ErrorDetails) -> str:
    """Pydantic's message for `error`, except for an unknown name: "unknown parameter;
    known: …" with the names the model takes at that place (when it can tell)."""
    if error["type"] != "extra_forbidden":
        return error["msg"]
    known = known_names(model, error["loc"][:-1])
    return f"unknown parameter; known: {', '.join(known)}" if known else "unknown parameter"


def known_names(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the model found at `loc` inside `model` (following fields,
    dict values, list items and union members), or None when `loc` leads elsewhere."""
    current: Any = model
    for part in loc:
        current = _inside(current, part)
        if current is None:
            return None
    current = _unwrapped(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return None


def _inside(annotation: Any, part: str | int) -> Any:
    annotation = _unwrapped(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset, Sequence) and args:
        return args[0]
    if origin in (Union, types.UnionType):
        tagged = next((arg for arg in args if _tag(arg) == part), None)
        if tagged is not None:
            return tagged
        found = UNION_MEMBER.search(str(part))
        name = found.group("name") if found else None
        return next((arg for arg in args if getattr(arg, "__name__", None) == name), None)
    return None


def _tag(annotation: Any) -> str | None:
    """The `Tag` of a discriminated union's member (pydantic names the member by it)."""
    if get_origin(annotation) is Annotated:
        for meta in get_args(annotation)[1:]:
            if isinstance(meta, Tag):
                return meta.tag
    return None


def _unwrapped(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation
