"""The jobs of a round, and the feeder that asks for them over HTTP as a client would.

The mix (seeded, so a round can be repeated): the built-in `synthetic` exporter with
several column specs and row counts, and the `chaos` exporter (rows in batches with a
pause between them, and an execution log); every tabular format; compression none, gzip
and zstd; single files, numbered parts (`options.max_rows_per_file`) and zip bundles
(`options.formats`); several owners, each with a token of its own, so that with a
running cap of 1 the claims contend; some jobs with `max_attempts` 1.

The feeder paces the requests, sends an `Idempotency-Key` with each, and retries a
request through connection errors, 5xx and 429 (a PostgreSQL restart) until it is
answered or a deadline passes. A request that never got an answer is *not created* —
unless the store shows later that its key was stored (the answer was lost), in which
case the check adopts the job. A 4xx other than 429 means the harness asked for
something invalid: a harness error."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

FORMATS = ("csv", "tsv", "ndjson", "json", "parquet", "xlsx")
COMPRESSIONS = ("none", "gzip", "zstd")

SYNTHETIC_COLUMNS: list[dict[str, Any] | None] = [
    None,  # the default orders table
    {"id": "sequence", "value": "float"},
    {
        "id": "sequence",
        "who": "name",
        "mail": "email",
        "at": "timestamp",
        "day": "date",
        "flag": "bool",
        "pick": {"type": "choice", "options": ["a", "b,c", 'd"e', "f\tg"]},
    },
    {
        "id": "sequence",
        "key": "uuid",
        "note": {"type": "text", "null_fraction": 0.5},
        "amount": {"type": "decimal", "min": 0, "max": 10},
        "n": {"type": "int", "min": -5, "max": 5},
    },
]


@dataclass(frozen=True)
class JobRequest:
    index: int
    owner: str
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return f"chaos-{self.index}"


def _params(rng: random.Random, exporter: str) -> dict[str, Any]:
    if exporter == "chaos" and rng.random() < 0.3:  # short: many claims and completions
        return {"batches": rng.randint(1, 2), "rows_per_batch": 10, "delay": 0.01}
    if exporter == "chaos":
        return {
            "batches": rng.randint(3, 6),
            "rows_per_batch": rng.choice([20, 50, 120, 300]),
            "delay": rng.choice([0.05, 0.1, 0.15]),
        }
    params: dict[str, Any] = {"rows": rng.choice([50, 300, 1000, 2500]), "seed": rng.randint(0, 99)}
    columns = rng.choice(SYNTHETIC_COLUMNS)
    if columns is not None:
        params["columns"] = columns
    return params


def expected_rows(body: dict[str, Any]) -> int:
    params = body["params"]
    if body["exporter"] == "chaos":
        return int(params["batches"]) * int(params["rows_per_batch"])
    return int(params["rows"])


def make_requests(count: int, owners: list[str], seed: int) -> list[JobRequest]:
    rng = random.Random(seed)
    requests = []
    for index in range(count):
        exporter = rng.choice(["synthetic", "chaos"])
        body: dict[str, Any] = {
            "exporter": exporter,
            "params": _params(rng, exporter),
            "format": rng.choice(FORMATS),
            "compression": rng.choice(COMPRESSIONS),
        }
        shape = rng.random()
        if shape < 0.2:
            body["options"] = {"max_rows_per_file": max(1, expected_rows(body) // 3)}
        elif shape < 0.35:
            body["options"] = {"formats": rng.sample(FORMATS, rng.randint(2, 3))}
        if rng.random() < 0.15:
            body["max_attempts"] = 1
        requests.append(JobRequest(index, owners[index % len(owners)], body))
    return requests


RETRYABLE_STATUS = {429, 500, 502, 503, 504}


@dataclass
class Feeder:
    """Creates the first `burst` requests at once (a backlog, so owners sit at their
    cap with jobs waiting and every claimer races for the first jobs), then the rest at
    `rate` per second, so there is work for the faults to land on until the end."""

    url: str
    tokens: dict[str, str]
    requests: list[JobRequest]
    rate: float
    burst: int = 0
    give_up_after: float = 90.0
    created: dict[int, str] = field(default_factory=dict)
    """Request index → job id."""
    not_created: dict[int, str] = field(default_factory=dict)
    """Request index → why it gave up (never answered)."""
    rejected: dict[int, str] = field(default_factory=dict)
    """Request index → the 4xx answer (a harness error)."""
    retries: int = 0

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        began = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=15) as client:
            for request in self.requests:
                pause = began + self.due(request.index) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self._create(client, request)

    def due(self, index: int) -> float:
        """Seconds after the start at which request `index` is sent."""
        return max(0, index - self.burst) / self.rate

    def _create(self, client: httpx.Client, request: JobRequest) -> None:
        headers = {
            "Authorization": f"Bearer {self.tokens[request.owner]}",
            "Idempotency-Key": request.key,
        }
        deadline = time.monotonic() + self.give_up_after
        backoff = 0.2
        reason = ""
        while time.monotonic() < deadline:
            try:
                answer = client.post("/v1/exports", json=request.body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status_code in (200, 202):
                    self.created[request.index] = answer.json()["id"]
                    return
                if answer.status_code not in RETRYABLE_STATUS:
                    self.rejected[request.index] = f"{answer.status_code} {answer.text[:300]}"
                    return
                reason = f"{answer.status_code} {answer.text[:200]}"
            self.retries += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        self.not_created[request.index] = reason or "deadline passed"
