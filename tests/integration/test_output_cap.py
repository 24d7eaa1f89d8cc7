"""The output-bytes cap (`EXPORTD_MAX_OUTPUT_BYTES`) through a real server and worker on
SQLite and PostgreSQL: an export past it fails at once with `too_large`, nothing kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer, wait_for

Start = Callable[..., LiveServer]


@pytest.mark.parametrize(
    "extra",
    [{}, {"options": {"max_rows_per_file": 500}}, {"options": {"formats": ["csv", "ndjson"]}}],
    ids=["one-file", "parts", "bundle"],
)
def test_an_export_over_the_cap_fails_permanently_with_nothing_left(
    live_server: Start, tmp_path: Path, extra: dict[str, Any]
) -> None:
    """Past the cap the attempt fails `too_large`, is not retried, and neither files nor
    partials remain; a small export on the same server completes."""
    server = live_server(max_output_bytes=20_000, max_attempts=3)
    client = server.client(server.token("alice"))
    body = {"exporter": "synthetic", "params": {"rows": 5000}, **extra}
    job = client.post("/v1/exports", json=body).json()
    failed = wait_for(
        lambda: (j := client.get(f"/v1/exports/{job['id']}").json())["status"] == "failed" and j,
        what="the export to fail",
    )
    assert failed["error"]["code"] == "too_large" and failed["error"]["retryable"] is False
    assert failed["attempt"] == 1 and failed["artifacts"] == []
    assert "20,000 bytes" in failed["error"]["message"]
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == []
    small = client.post("/v1/exports", json={"exporter": "synthetic", "params": {"rows": 5}})
    done = wait_for(
        lambda: (
            (j := client.get(f"/v1/exports/{small.json()['id']}").json())["status"] == "completed"
            and j
        ),
        what="the small export",
    )
    assert done["artifacts"][0]["size"] < 20_000
