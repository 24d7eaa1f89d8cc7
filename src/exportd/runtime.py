"""`Runtime`: the parts of one exportd process, built from `Settings`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exportd.config import Settings
from exportd.delivery.addresses import AddressGuard
from exportd.errors import ConfigurationError
from exportd.exporters import Registry, load_all
from exportd.jobs import RetryPolicy
from exportd.storage import ArtifactStorage, open_storage
from exportd.store import SqliteJobStore, SqlJobStore, open_store
from exportd.worker import JobRunner, Worker, make_worker_id
from exportd.worker.sweeper import Sweeper

if TYPE_CHECKING:
    from exportd.delivery.deliverer import Deliverer

log = logging.getLogger(__name__)

LINK_KEY = "link_signing_key"


@dataclass
class Runtime:
    settings: Settings
    store: SqlJobStore
    storage: ArtifactStorage
    registry: Registry
    workers: list[Worker] = field(default_factory=list)
    guard: AddressGuard = field(default_factory=AddressGuard)
    """SSRF protection for webhook URLs, at creation and at delivery (tests swap its
    `resolver` to play DNS)."""
    deliverers: list[Deliverer] = field(default_factory=list)
    _secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, apps: Iterable[str] = (), migrate: bool = True
    ) -> Runtime:
        """Open the store and storage. The embedded SQLite store always migrates itself;
        others migrate when `migrate` is true and otherwise must already be current."""
        settings = settings or Settings()
        settings.ensure_home()
        store = open_store(settings.resolved_database_url())
        store.retry_seconds = settings.store_retry_seconds
        if migrate or isinstance(store, SqliteJobStore):
            store.migrate()
        elif not store.migrations_current():
            raise ConfigurationError("the job store schema is not current: run `exportd migrate`")
        storage = open_storage(settings.resolved_storage_url(), settings)
        storage.attach(store)
        guard = AddressGuard(allow_private=settings.webhook_allow_private)
        return cls(settings, store, storage, load_all(apps), guard=guard)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.settings.retry_base_seconds, self.settings.retry_cap_seconds)

    def secret_key(self) -> bytes:
        """The key that signs download links: `EXPORTD_SECRET_KEY` if set, else one key
        kept in the job store, created once by whichever process asks first, so every
        API server sharing the store signs and verifies the same links. (A key file
        left in `EXPORTD_HOME` by an earlier version seeds it, so its links stay valid.)"""
        if self._secret is None:
            self._secret = self._load_secret()
        return self._secret

    def _load_secret(self) -> bytes:
        if self.settings.secret_key:
            return self.settings.secret_key.encode()
        value = self.store.shared_secret(LINK_KEY, self._first_secret)
        if not value.strip():
            raise ConfigurationError("the stored link-signing key is empty")
        return value.strip().encode()

    def _first_secret(self) -> str:
        legacy = self.settings.home / "secret.key"
        try:
            old = legacy.read_text().strip()
        except OSError:
            old = ""
        return old or secrets.token_urlsafe(48)

    def bootstrap_admin_token(self) -> str | None:
        """On first start, create an admin token if there is none; returns its secret."""
        if self.store.has_admin_token():
            return None
        _, secret = self.store.create_token("admin", admin=True, name="created on first start")
        return secret

    def runner(self) -> JobRunner:
        return JobRunner(
            self.store,
            self.storage,
            self.registry,
            retry_policy=self.retry_policy,
            lease_seconds=self.settings.lease_seconds,
            progress_interval=self.settings.progress_interval,
            settings=self.settings,
        )

    def sweeper(self, holder: str | None = None) -> Sweeper:
        return Sweeper(
            self.store,
            self.storage,
            holder=holder or make_worker_id(),
            grace_seconds=self.settings.sweep_grace_seconds,
            interval_seconds=self.settings.sweep_interval_seconds,
            job_retention_seconds=self.settings.job_retention,
            progress_retention_seconds=self.settings.progress_retention,
            scratch_dir=self.settings.resolved_scratch_dir(),
        )

    def start_worker(self, concurrency: int | None = None) -> Worker:
        worker_id = make_worker_id()
        worker = Worker(
            self.store,
            self.storage,
            self.runner(),
            concurrency=concurrency or self.settings.concurrency,
            owner_cap=self.settings.owner_running_cap,
            poll_interval=self.settings.poll_interval,
            worker_id=worker_id,
            sweeper=self.sweeper(worker_id),
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def start_deliverer(self) -> Deliverer | None:
        """Start sending the outbox from this process (none with
        `EXPORTD_DELIVERY_CONCURRENCY=0`)."""
        if self.settings.delivery_concurrency < 1:
            return None
        from exportd.delivery.setup import build_deliverer

        deliverer = build_deliverer(self, make_worker_id())
        deliverer.start()
        self.deliverers.append(deliverer)
        return deliverer

    def stop_deliverers(self, grace: float | None = None) -> None:
        for deliverer in self.deliverers:
            deliverer.stop(self.settings.grace_seconds if grace is None else grace)
        self.deliverers.clear()

    def stop_workers(self, grace: float | None = None) -> None:
        for worker in self.workers:
            worker.stop(self.settings.grace_seconds if grace is None else grace)
        self.workers.clear()

    def close(self, grace: float | None = None) -> None:
        self.stop_workers(grace)
        self.stop_deliverers(grace)
        self.store.dispose()
