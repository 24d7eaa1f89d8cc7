"""What a worker process loads. The libraries that only some commands or jobs need (the
HTTP client and server, ADBC, psycopg, Alembic, Jinja2, the xlsx and Parquet writers,
the zstd and brotli codecs, boto3 for S3 storage) are imported when used, so they cost a
worker no memory until a job needs them. Checked in a fresh interpreter, since this one
has them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exportd.config import Settings
from exportd.store import open_store

pytestmark = pytest.mark.slow

WORKER = """
import json, sys, time

from exportd.cli import cli  # every command registered, as `exportd worker` has them
from exportd.config import Settings
from exportd.jobs import NewJob
from exportd.runtime import Runtime

runtime = Runtime.open(Settings(), migrate=False)
started = sorted(sys.modules)
job = runtime.store.enqueue(
    NewJob(owner="o", exporter="synthetic", params={"rows": 1000}, format="csv")
)
runtime.start_worker(concurrency=1)
while not runtime.store.get(job.id).status.terminal:
    time.sleep(0.05)
status = runtime.store.get(job.id).status.value
runtime.close(grace=0)
print(json.dumps({"started": started, "status": status, "after_csv": sorted(sys.modules)}))
"""

NOT_FOR_A_CSV_WORKER = {
    "adbc_driver_manager",
    "adbc_driver_postgresql",
    "alembic",
    "boto3",
    "botocore",
    "brotli",
    "fastapi",
    "httpx",
    "jinja2",
    "pandas",
    "psycopg",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "sqlglot",
    "starlette",
    "uvicorn",
    "weasyprint",
    "xlsxwriter",
    "zstandard",
}


def test_a_worker_imports_only_what_its_jobs_use(tmp_path: Path) -> None:
    """Started on a current embedded store, then after a CSV export: none of the
    libraries above is loaded."""
    home = tmp_path / "home"
    settings = Settings(home=home)
    settings.ensure_home()
    store = open_store(settings.resolved_database_url())
    store.migrate()
    store.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env["EXPORTD_HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout)
    assert found["status"] == "completed"
    assert NOT_FOR_A_CSV_WORKER & set(found["started"]) == set()
    assert NOT_FOR_A_CSV_WORKER & set(found["after_csv"]) == set()
