"""`exportd exporters`: the exporters there are, their formats and their params (name,
type, default, description), read from each params JSON Schema: the server's
(`GET /v1/exporters`) with a URL, else this process's own (built-ins, plug-ins, --app)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
import orjson

from exportd.cli import app_option, cli
from exportd.cli.session import connect, connection_options

if TYPE_CHECKING:
    from exportd.client import ExporterInfo

DEFAULT_WIDTH = 24
"""Longer defaults (a whole column spec) are shortened to this many characters."""
TYPE_WIDTH = 30
"""And longer types (a union of many literals) to this many."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str
    description: str


def params_of(schema: dict[str, Any]) -> list[Param]:
    """One `Param` per property of a params JSON Schema, in its order."""
    required = set(schema.get("required") or ())
    definitions = schema.get("$defs") or {}
    found = []
    for name, prop in (schema.get("properties") or {}).items():
        if name in required:
            default = "required"
        elif "default" in prop:
            default = _short(json.dumps(prop["default"], ensure_ascii=False), DEFAULT_WIDTH)
        else:
            default = ""
        kind = _short(type_of(prop, definitions), TYPE_WIDTH)
        found.append(Param(name, kind, default, prop.get("description", "")))
    return found


def type_of(prop: dict[str, Any], definitions: dict[str, Any]) -> str:
    """`integer 0..10`, `string or null`, `A4 | letter`, `list of string`, `Column`."""
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            members = [type_of(member, definitions) for member in prop[key]]
            return " or ".join(dict.fromkeys(members))
    kind = str(prop.get("type", "any"))
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"list of {type_of(prop['items'], definitions)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {type_of(prop['additionalProperties'], definitions)}"
    return kind + _bounds(prop)


def _bounds(prop: dict[str, Any]) -> str:
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if low is not None and high is not None:
        return f" {low}..{high}"
    if low is not None:
        return f" >= {low}" if "minimum" in prop else f" > {low}"
    if high is not None:
        return f" <= {high}" if "maximum" in prop else f" < {high}"
    return ""


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def describe(info: ExporterInfo) -> list[str]:
    """The lines `exportd exporters` prints for one exporter."""
    lines = [
        f"{info.name}: {info.description}".rstrip(": "),
        f"  formats: {', '.join(info.formats)}",
    ]
    params = params_of(info.params_schema)
    if not params:
        return [*lines, "  params: none"]
    widths = [max(len(getattr(p, field)) for p in params) for field in ("name", "type", "default")]
    lines.append("  params:")
    for p in params:
        cells = (p.name.ljust(widths[0]), p.type.ljust(widths[1]), p.default.ljust(widths[2]))
        lines.append(f"    {'  '.join(cells)}  {p.description}".rstrip())
    return lines


@cli.command("exporters", short_help="List exporters with their params and formats.")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="The exporters as the API's JSON.")
@connection_options
@app_option
def exporters(
    names: tuple[str, ...],
    as_json: bool,
    url: str | None,
    token: str | None,
    apps: tuple[str, ...],
) -> None:
    """List the exporters (or only NAMES) with their formats and params: name, type,
    default and description.

    With --url (or EXPORTD_URL), the server's; without, the ones this process has:
    the built-ins, installed plug-ins and those --app loads.
    """
    if url:
        with connect(url, token) as jobs:
            found = jobs.exporters()
    else:
        from exportd.cli.local import exporter_infos
        from exportd.config import Settings
        from exportd.exporters import load_all

        found = exporter_infos(load_all(apps), Settings())
    unknown = sorted(set(names) - {info.name for info in found})
    if unknown:
        known = ", ".join(info.name for info in found)
        raise click.BadParameter(f"no exporter {', '.join(unknown)} (have: {known})")
    chosen = [info for info in found if not names or info.name in names]
    if as_json:
        rows = [{**info.__dict__, "formats": list(info.formats)} for info in chosen]
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo("\n\n".join("\n".join(describe(info)) for info in chosen))
