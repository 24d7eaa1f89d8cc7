"""The OpenAPI document as this server really behaves, built once per app:

- every 4xx response is `application/problem+json` with the `Problem` schema, and every
  route that needs a token documents its 401;
- an export request is one of the registered exporters, each with its own params schema,
  formats and options (`ExportRequest.<exporter>` variants), and `ttl_seconds` is held
  to the server's `max_ttl_seconds`;
- integers in request bodies are bounded to 64 bits, as the API refuses larger ones.

Routes declare their own error statuses with `problems(404, 409, ...)`."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from exportd.api.problems import PROBLEM, TITLES
from exportd.api.schemas import FieldError, ProblemOut
from exportd.api.validation import INT64_MAX, INT64_MIN
from exportd.config import Settings
from exportd.exporters import ExporterSpec, Registry
from exportd.formats import COMPRESSIONS, FORMATS
from exportd.formats.plan import WriterOptions

Schema = dict[str, Any]
REF = "#/components/schemas/"
PROBLEM_REF = {"$ref": f"{REF}Problem"}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer these error statuses."""
    return {status: {"description": TITLES[status]} for status in statuses}


def install(app: FastAPI, registry: Registry, settings: Settings) -> None:
    def openapi() -> Schema:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            describe_problems(document, components)
            describe_exporters(components, registry, settings)
            bound_integers(components)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _operations(document: Schema) -> Iterator[Schema]:
    for item in document.get("paths", {}).values():
        yield from item.values()


def describe_problems(document: Schema, components: Schema) -> None:
    """Problem details for every 4xx; a 401 wherever a token is needed."""
    for operation in _operations(document):
        responses = operation.setdefault("responses", {})
        if operation.get("security"):
            responses.setdefault("401", {"description": TITLES[401]})
        for status, response in responses.items():
            if status.startswith("4"):
                response["description"] = TITLES.get(int(status), response.get("description"))
                response["content"] = {PROBLEM: {"schema": PROBLEM_REF}}
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem = ProblemOut.model_json_schema(ref_template=f"{REF}{{model}}")
    problem.pop("$defs", None)
    components["Problem"] = problem
    components["FieldError"] = FieldError.model_json_schema()


def _name(exporter: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", exporter)


def describe_exporters(components: Schema, registry: Registry, settings: Settings) -> None:
    """`ExportRequest` as one of a variant per exporter."""
    base = components.get("ExportRequest")
    specs = list(registry)
    if base is None or not specs:
        return
    base["properties"]["ttl_seconds"]["anyOf"][0]["maximum"] = settings.max_ttl_seconds
    variants = []
    for spec in specs:
        name = f"ExportRequest.{_name(spec.name)}"
        components[name] = export_variant(base, spec, components, settings)
        variants.append({"$ref": f"{REF}{name}"})
    components["ExportRequest"] = {
        "title": "ExportRequest",
        "description": base.get("description", ""),
        "oneOf": variants,
    }


def params_schema(spec: ExporterSpec, settings: Settings, **kw: Any) -> Schema:
    """The JSON Schema of an exporter's params on this server. A params model may define
    `json_schema_for(settings, **kw)` when what it accepts depends on the settings (the
    synthetic row cap); otherwise it is the model's JSON Schema."""
    for_settings = getattr(spec.params, "json_schema_for", None)
    if for_settings is not None:
        schema: Schema = for_settings(settings, **kw)
        return schema
    return spec.params.model_json_schema(**kw)


def export_variant(
    base: Schema, spec: ExporterSpec, components: Schema, settings: Settings
) -> Schema:
    """The request for one exporter: its name, its params schema (its `$defs` become
    components `<exporter>.<Model>`), the formats it writes and the options they take."""
    prefix = f"{_name(spec.name)}."
    params = params_schema(spec, settings, ref_template=f"{REF}{prefix}{{model}}")
    for def_name, definition in params.pop("$defs", {}).items():
        components[f"{prefix}{def_name}"] = definition
    allowed = [f for f in spec.formats if f in FORMATS]
    variant = copy.deepcopy(base)
    variant["title"] = f"ExportRequest ({spec.name})"
    variant["description"] = spec.description
    properties = variant["properties"]
    properties["exporter"] = {"type": "string", "enum": [spec.name]}
    properties["params"] = params
    properties["format"] = {"type": "string", "enum": allowed}
    properties["compression"] = {"type": "string", "enum": list(COMPRESSIONS), "default": "none"}
    properties["options"] = options_schema(allowed, document=spec.kind == "document")
    required = variant.setdefault("required", [])
    if "csv" in allowed:
        properties["format"]["default"] = "csv"
    else:
        required.append("format")
    if params.get("required"):  # then `{}`, the default, is not valid params
        required.append("params")
    return variant


def options_schema(formats: list[str], *, document: bool) -> Schema:
    schema = WriterOptions.model_json_schema()
    properties = schema["properties"]
    listed = properties["formats"]["anyOf"][0]
    listed["items"] = {"type": "string", "enum": formats}
    listed["uniqueItems"] = True
    if document:  # one file: no parts, and a bundle of one format at most
        for key in ("max_rows_per_file", "max_bytes_per_file"):
            properties.pop(key)
        listed["maxItems"] = 1
    return schema


def bound_integers(node: Any) -> None:
    """Give every unbounded integer schema the 64-bit range the API accepts."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("minimum", INT64_MIN)
            node.setdefault("maximum", INT64_MAX)
        for value in node.values():
            bound_integers(value)
    elif isinstance(node, list):
        for value in node:
            bound_integers(value)
