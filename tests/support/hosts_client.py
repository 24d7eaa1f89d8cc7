"""The client host of the several-machines test: run inside its network namespace as
`python -m support.hosts_client STEP CONFIG`, it talks to the API hosts over HTTP only
and prints one JSON object with what it saw.

- `create`: queue the jobs, half through each API host (with idempotency keys, so a
  retried request never makes two).
- `follow`: watch every job created on the first host through the second host's SSE
  stream until it ends; then, for each completed job, have one host issue a link and
  download it through the other host, checking size and sha256."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

from exportd.client import Client


def create(config: dict[str, Any]) -> dict[str, Any]:
    apis, token, count = config["apis"], config["token"], config["jobs"]
    made: dict[str, list[str]] = {api: [] for api in apis}
    clients = [Client(api, token) for api in apis]
    try:
        for index in range(count):
            api = apis[index % len(apis)]
            job = clients[index % len(apis)].create(
                config["exporter"],
                config["params"],
                idempotency_key=f"hosts-{index}",
                labels={"index": str(index)},
            )
            made[api].append(job.id)
    finally:
        for client in clients:
            client.close()
    return {"created": made}


def follow(config: dict[str, Any]) -> dict[str, Any]:
    first, second = config["apis"]
    token = config["token"]
    watched: dict[str, str] = {}
    verified, mismatched = 0, []
    with Client(second, token) as other, Client(first, token) as home:
        for job_id in config["created"][first]:
            last = None
            for snapshot in other.watch(job_id, timeout=config["timeout"]):
                last = snapshot
            watched[job_id] = last.status if last is not None else "none"
        everyone = [j for ids in config["created"].values() for j in ids]
        for job_id in everyone:
            job = home.get(job_id)
            if job.status != "completed":
                continue
            issuer, fetcher = (
                (home, second) if job_id in config["created"][second] else (other, first)
            )
            link = issuer.link(job_id)
            through = fetcher + urlsplit(link.url).path
            body = httpx.get(through, timeout=60, follow_redirects=False)
            digest = hashlib.sha256(body.content).hexdigest()
            ok = (
                body.status_code == 200 and digest == link.sha256 and len(body.content) == link.size
            )
            if ok:
                verified += 1
            else:
                mismatched.append({"job": job_id, "status": body.status_code})
    return {"watched": watched, "verified": verified, "mismatched": mismatched}


def main() -> None:
    step, config = sys.argv[1], json.loads(sys.argv[2])
    result = {"create": create, "follow": follow}[step](config)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
