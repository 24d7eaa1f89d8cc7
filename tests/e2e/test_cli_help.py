"""What `exportd` tells a new user who asks: whole sentences in every command list, the
formats, compressions and examples of `export --help`, and `exportd exporters` (the
exporters with their params' name, type, default and description) on a server and
in-process alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exportd.cli.export import COMPRESSION_NAMES, FORMAT_NAMES
from support.cli import either_env, exportd, local_env, served

pytestmark = pytest.mark.slow
__all__ = ["either_env", "served"]

BUILT_INS = ("synthetic", "sql", "document")


@pytest.mark.parametrize("group", [[], ["jobs"], ["token"]])
def test_command_lists_are_not_cut_mid_sentence(tmp_path: Path, group: list[str]) -> None:
    """In an 80-column help, no command's summary ends in "..."."""
    result = exportd(*group, "--help", env=local_env(tmp_path, COLUMNS="80"), cwd=tmp_path)
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1].splitlines()
    assert [line for line in commands if line.rstrip().endswith("...")] == []
    assert len([line for line in commands if line.strip()]) >= 3


def test_export_help_lists_formats_compressions_and_examples(tmp_path: Path) -> None:
    """`export --help` names every format and compression and shows examples."""
    result = exportd("export", "--help", env=local_env(tmp_path), cwd=tmp_path)
    text = result.stdout
    assert f"[{'|'.join(FORMAT_NAMES)}]" in text
    assert f"[{'|'.join(COMPRESSION_NAMES)}]" in text
    assert "Examples:" in text
    assert "exportd export synthetic -p rows=1000000 -c gzip -o orders.csv.gz" in text
    assert "EXPORTD_URL" in text


def test_exporters_lists_each_param_with_type_default_and_description(
    either_env: dict[str, str], tmp_path: Path
) -> None:
    """`exportd exporters` shows the built-ins' params, each with its description."""
    result = exportd("exporters", *BUILT_INS, env=either_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = next(line for line in lines if line.strip().startswith("rows "))
    assert rows.split()[:4] == ["rows", "integer", "0..100000000", "1000"]  # the server's cap
    assert "how many rows" in rows
    assert any(line.startswith("  formats: html, markdown, pdf") for line in lines)
    assert any(line.strip().startswith("source ") and "required" in line for line in lines)


def test_every_built_in_param_has_a_description(either_env: dict[str, str], tmp_path: Path) -> None:
    """Through `GET /v1/exporters` and in-process: every param of the built-ins (and of a
    synthetic column spec) is described."""
    result = exportd("exporters", *BUILT_INS, "--json", env=either_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = {info["name"]: info["params_schema"] for info in json.loads(result.stdout)}
    assert set(found) == set(BUILT_INS)
    schemas = [*found.values(), found["synthetic"]["$defs"]["Column"]]
    undescribed = [
        name
        for schema in schemas
        for name, prop in schema["properties"].items()
        if not prop.get("description")
    ]
    assert undescribed == []


def test_an_unknown_exporter_name_is_a_usage_error(tmp_path: Path) -> None:
    """`exportd exporters nope` exits 2 and lists what there is."""
    result = exportd("exporters", "nope", env=local_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "no exporter nope (have: document, " in result.stderr
