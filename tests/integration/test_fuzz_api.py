"""API fuzzing: schemathesis runs every phase (examples, coverage, fuzzing, stateful) with
every check over the whole OpenAPI of a real `exportd serve` (uvicorn on a loopback port,
SQLite, two worker slots), authenticated as an admin. The OpenAPI lists the registered
exporters with their params schemas, so valid requests create real jobs that the worker
runs, and the stateful phase follows them (get, cancel, retry, download, delete).

The run is derandomized from a fixed seed (no example database), so it generates the
same cases every time; what the server answers may differ with timing (a job queued or
already done), which is why the few tolerated findings below are matched, not required."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from conftest import free_port, settings_env, wait_for
from exportd.config import Settings
from exportd.store import open_store

SEED = 20_240_611
MAX_EXAMPLES = 8
"""Per operation and phase: a minute or two on two shared cores."""

CONFIG = """\
seed = {seed}
continue-on-failure = true
request-timeout = 30
headers = {{ Authorization = "Bearer {token}" }}

[generation]
max-examples = {max_examples}
deterministic = true
database = "none"
# The API refuses NUL in all text (PostgreSQL cannot store it; see
# test_input_validation.py); schema-valid strings with NUL would each be reported as a
# refused valid request.
allow-x00 = false

# The stream of all of the caller's events never ends by design: read it for two
# seconds (its parameters are checked before it starts).
[[operations]]
include-path = "/v1/events"
include-method = "GET"
request-timeout = 2
"""


@dataclass(frozen=True)
class Finding:
    check: str
    operation: str
    status: int | None
    code: str | None
    """The problem's `code`, when the response is a problem."""


@dataclass(frozen=True)
class FalsePositive:
    """A finding tolerated for problem details whose reasons match `reasons`."""

    finding: Finding
    reasons: str
    why: str


CONFIGURATION = (
    "sql and document params name sources, queries and templates, which are server "
    "configuration (none is configured here): no schema can enumerate them"
)
CREATE = ("POST /v1/exports", "POST /v1/batches")
SSRF = (
    "a webhook URL of the right form may name a host that resolves to a loopback, private "
    "or unspecified address (refused: SSRF protection) or to nothing at all: what a name "
    "resolves to is not in any schema"
)
TOLERATED = [
    *(
        FalsePositive(Finding("positive_data_acceptance", op, 422, code), "", CONFIGURATION)
        for op in CREATE
        for code in ("unknown_source", "unknown_query", "unknown_template")
    ),
    *(
        FalsePositive(
            Finding("positive_data_acceptance", op, 422, "invalid_params"),
            "min must not exceed max",
            "a synthetic column's min must not exceed its max: JSON Schema cannot compare "
            "two values",
        )
        for op in CREATE
    ),
    *(
        FalsePositive(
            Finding("positive_data_acceptance", op, 422, "invalid_params"),
            "give exactly one of `query`|ad-hoc `sql` takes no params"
            "|give both `source` and `query`, or neither",
            "sql params need exactly one of `query` and `sql` (and ad-hoc sql no params), "
            "document params both or neither of `source` and `query`: rules of the "
            "SqlParams and DocumentParams "
            "models (exporters/sql.py, document.py) that their JSON Schemas do not state",
        )
        for op in CREATE
    ),
    *(
        FalsePositive(
            Finding("positive_data_acceptance", op, 422, "validation_error"),
            "integers must fit in 64 bits|nested more than",
            "free-form JSON members (document data, query params) may hold any JSON in the "
            "schema; the API refuses integers beyond 64 bits and deep nesting, which no job "
            "store can hold",
        )
        for op in CREATE
    ),
    *(
        FalsePositive(Finding("positive_data_acceptance", op, 422, code), "", SSRF)
        for op in (*CREATE, "POST /v1/webhooks", "PATCH /v1/webhooks/{webhook_id}")
        for code in ("webhook_url_forbidden", "webhook_url_unresolvable")
    ),
    *(
        FalsePositive(
            Finding("positive_data_acceptance", op, 422, "storage_quota_exceeded"),
            "",
            "the stateful phase may set the caller's own quota below what it stores: then "
            "creation is refused, as it must be",
        )
        for op in CREATE
    ),
    FalsePositive(
        Finding("positive_data_acceptance", "GET /v1/stats", 422, "validation_error"),
        "between 1m and 7d",
        "a window is a duration from 1m to 7d: the schema's pattern says its form, not its range",
    ),
    FalsePositive(
        Finding(
            "positive_data_acceptance",
            "GET /v1/exports/{job_id}/download",
            400,
            "artifact_name_required",
        ),
        "",
        "a completed job with several files needs ?name=; whether it has several depends "
        "on the job, not on the request",
    ),
    *(
        FalsePositive(
            Finding("positive_data_acceptance", op, 410, "expired"),
            "the files of this export have expired",
            "whether a job's files have expired depends on the job (the stateful phase may "
            "have created it with a TTL of a second) and on the clock, not on the request",
        )
        for op in ("GET /v1/exports/{job_id}/download", "POST /v1/exports/{job_id}/links")
    ),
]


@pytest.fixture
def fuzz_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`exportd serve` in a subprocess: (base URL, admin token). Its log must show no
    traceback: no exception in a request and no job failing unexpectedly."""
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'exportd.db'}",
        storage_url=(tmp_path / "artifacts").as_uri(),
        port=free_port(),
        poll_interval=0.2,
        retry_base_seconds=0.01,
        retry_cap_seconds=0.05,
        max_active_per_owner=100_000,  # jobs really get created; 429 has its own tests
        max_output_bytes=1_000_000,  # every job ends fast; bigger ones fail too_large
    )
    store = open_store(settings.resolved_database_url())
    store.migrate()
    _, token = store.create_token("fuzz", admin=True)
    store.dispose()
    command = [sys.executable, "-m", "exportd", "serve"]
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen(command, env=settings_env(settings), stderr=stderr)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        wait_for(lambda: _up(url, server), timeout=60, what="exportd serve to answer")
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=60)
    text = log.read_text(errors="replace")
    if "Traceback" in text:
        where = text.index("Traceback")
        pytest.fail(
            f"the server's log has a traceback:\n{text[where : where + 8000]}", pytrace=False
        )


def _up(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        pytest.fail(f"exportd serve exited with {server.returncode}")
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Run:
    cases: Counter[str] = field(default_factory=Counter)
    findings: Counter[Finding] = field(default_factory=Counter)
    samples: dict[Finding, str] = field(default_factory=dict)
    """One failing request (curl) and the start of its response, per finding."""
    details: dict[Finding, set[str]] = field(default_factory=dict)
    """Every problem `detail` a finding had."""
    errors: list[str] = field(default_factory=list)

    def unexpected(self, tolerated: list[FalsePositive]) -> str:
        """The findings not tolerated, each with its unmatched reasons and a sample. A
        finding is tolerated when each reason of every problem `detail` it had (their
        `; `-separated parts) matches a pattern tolerated for it."""
        report = []
        for finding, count in self.findings.items():
            patterns = [fp.reasons for fp in tolerated if fp.finding == finding]
            parts = {part for detail in self.details[finding] for part in detail.split("; ")}
            left = sorted(p for p in parts if not any(re.search(r, p) for r in patterns))
            if not patterns or left:
                report.append(f"{finding} x{count}: {left}\n  {self.samples[finding]}")
        return "\n".join(report)


def fuzz(url: str, token: str) -> Run:
    config = SchemathesisConfig.from_str(
        CONFIG.format(seed=SEED, token=token, max_examples=MAX_EXAMPLES)
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    run = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            record(run, event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            run.errors.append(repr(event))
    return run


def record(run: Run, event: events.ScenarioFinished) -> None:
    recorder = event.recorder
    for case_id, node in recorder.cases.items():
        label = node.value.operation.label
        run.cases[label] += 1
        interaction = recorder.interactions.get(case_id)
        response = interaction.response if interaction else None
        for check in recorder.checks.get(case_id, []):
            if check.failure_info is None:
                continue
            status = response.status_code if response is not None else None
            problem = _problem(response)
            finding = Finding(check.name, label, status, problem.get("code"))
            run.findings[finding] += 1
            run.details.setdefault(finding, set()).add(str(problem.get("detail", "")))
            body = response.content[:400] if response is not None else b""
            run.samples.setdefault(finding, f"{check.failure_info.code_sample}\n  -> {body!r}")


def _problem(response: schemathesis.Response | None) -> dict[str, Any]:
    """The problem details of a response, or {}."""
    if response is None:
        return {}
    if not response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        return {}
    problem: dict[str, Any] = json.loads(response.content)
    return problem


# schemathesis names each strategy after the whole operation schema; hypothesis warns
# that such a repr is long. It is a message about reporting, not about the API.
@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
@pytest.mark.slow
def test_fuzzing_the_whole_api_finds_no_server_error(fuzz_server: tuple[str, str]) -> None:
    """Every operation is fuzzed with every check: no response is a 5xx, every other
    finding is one of the tolerated false positives, and real jobs were created."""
    url, token = fuzz_server
    run = fuzz(url, token)
    summary = (
        f"{len(run.cases)} operations, {sum(run.cases.values())} cases, "
        f"{sum(run.findings.values())} findings: {dict(run.findings)}"
    )
    print(summary)
    assert run.errors == [], summary
    server_errors = [f for f in run.findings if f.status is not None and f.status >= 500]
    assert server_errors == [], summary
    unexpected = run.unexpected(TOLERATED)
    if unexpected:  # in full: pytest would cut a long assertion message
        pytest.fail(f"findings not tolerated:\n{unexpected}\n\n{summary}", pytrace=False)
    documented = httpx.get(f"{url}/openapi.json").json()["paths"]
    operations = {f"{m.upper()} {p}" for p, item in documented.items() for m in item}
    assert operations <= set(run.cases), summary
    jobs = httpx.get(f"{url}/v1/exports", headers={"Authorization": f"Bearer {token}"}).json()
    assert jobs["items"], "no job was created"
