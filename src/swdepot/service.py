"""Wires the domain together from :class:`~swdepot.config.Settings`.

:class:`Service` is the one object the HTTP layer and the CLI talk to. It owns no
global state: a test can build several, each on its own data directory.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import math
import os
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from swdepot import forked
from swdepot.auth import ADMIN, Authenticator, PendingHash, hash_password
from swdepot.config import Settings
from swdepot.errors import Unavailable
from swdepot.forked import LogChannel
from swdepot.jobs.cache import RunningJobCache
from swdepot.jobs.runner import JobRunner
from swdepot.loginlimit import LoginLimiter
from swdepot.metrics import MeteredJobStore, Metrics
from swdepot.nodelock import NodeLock
from swdepot.nodes import NodeDirectory
from swdepot.packages.manifest import load_trusted_keys
from swdepot.packages.model import ValidationPolicy
from swdepot.persistence.stores import open_stores
from swdepot.repository.catalog import PackageCatalog
from swdepot.repository.placement import blob_stores, check_reachable
from swdepot.repository.repository import Repository
from swdepot.repository.store import BlobStore
from swdepot.sealing import Sealer
from swdepot.software.download import DownloadService
from swdepot.software.ingest import Intake, IntakeEvents, PackageIngest
from swdepot.software.ingest_process import Body, IntakeWorkers, intake_role
from swdepot.software.jobcontrol import JobControl
from swdepot.software.packages import PackageService
from swdepot.software.profile import ClusterProfile
from swdepot.software.update import Pace
from swdepot.software.update_engine import UpdateEngine
from swdepot.software.upload import UploadService
from swdepot.transfer.control import Control
from swdepot.transfer.curl import CurlOptions
from swdepot.transfer.engine import Engine, TransferEngine
from swdepot.transfer.process import ForkingEngine
from swdepot.transfer.retry import RetryPolicy
from swdepot.workers import WorkerPool
from swdepot.zygote import Zygote

log = logging.getLogger(__name__)


def generated_password() -> str:
    """A random admin password that no command line takes for an option: never begins
    with ``-``."""
    while (password := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return password


class Service:
    """Everything behind the API, built from settings."""

    def __init__(self, settings: Settings, *, lock: NodeLock | None = None) -> None:
        """``lock``: this node's lock on the data directory, if the caller took it already
        (else it is taken here, first of all; :class:`~swdepot.nodelock.NodeBusy` if a
        live process holds it). The service releases it on :meth:`close`."""
        self.settings = settings
        self.lock = lock or NodeLock.acquire(settings.data_dir, settings.node)
        try:
            self._build(settings)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, settings: Settings) -> None:
        # every store first, then the database: nothing is created or migrated unless
        # everything the service needs can be reached
        blobs = package_stores(settings, owner=settings.node)
        check_reachable(blobs)
        self.stores = open_stores(settings)
        self.metrics = Metrics()
        self.jobs = MeteredJobStore(RunningJobCache(self.stores.jobs), self.metrics)
        self.users = self.stores.users
        self.authenticator = Authenticator(
            self.users, limiter=LoginLimiter(settings.login_max_failures,
                                             settings.login_failure_window,
                                             shared=self.stores.logins))
        self.repository = open_repository(settings, self.stores.catalog, stores=blobs)
        self.metrics.watch(self.jobs, self.repository.catalog)
        self.runner = JobRunner(self.jobs, node=settings.node, workers=settings.job_workers,
                                lease_seconds=settings.job_lease_seconds)
        # cluster mode (a shared database): the nodes are the swdepot nodes that joined
        self.nodes = NodeDirectory(
            settings.cluster.uuid, settings.cluster.nodes, settings.node,
            store=self.stores.nodes if settings.database is not None else None,
            lease_seconds=settings.job_lease_seconds)
        # the software profile: read by every resource, changed only by the update engine
        self.profile = ClusterProfile(settings.cluster, self.stores.profile,
                                      members=self.nodes.names)
        self.updates = UpdateEngine(
            self.profile, self.stores.profile, repository=self.repository,
            runner=self.runner, node=settings.node,
            pace=Pace(settings.update_step_seconds, settings.update_minute_seconds),
            leases=self.stores.leases, lease_seconds=settings.job_lease_seconds,
        )
        node = settings.node
        transfer: Engine = TransferEngine(
            CurlOptions(
                ca_bundle=ca_bundle(settings),
                allowed_networks=settings.allowed_network_objects(),
                connect_timeout=settings.connect_timeout,
                stall_timeout=settings.stall_timeout,
                stall_min_speed=settings.stall_min_speed,
            ),
            settings.import_dir,
            retry=RetryPolicy(settings.retries, settings.retry_base_delay,
                              settings.retry_max_delay),
            max_duration=settings.max_duration,
        )
        # the worker processes are forked at start(), by a zygote forked before any thread
        self.workers: WorkerPool | None = None
        self._log_channel: LogChannel | None = None
        self._log_listener: logging.handlers.QueueListener | None = None
        elsewhere: IntakeWorkers | None = None
        engine: Engine | ForkingEngine = transfer
        if settings.transfer_process and hasattr(os, "fork"):
            engine = ForkingEngine(transfer, nice=settings.transfer_nice)
            self.workers = WorkerPool("intake", settings.worker_processes,
                                      limit=settings.job_workers)
            elsewhere = IntakeWorkers(self.repository, self.workers)
        self.ingest = PackageIngest(self.repository, self.validation_policy,
                                    settings.max_package_bytes)
        self.downloads = DownloadService(
            runner=self.runner, jobs=self.jobs, repository=self.repository, ingest=self.ingest,
            engine=engine, node=node, update_in_progress=self.profile.update_in_progress,
            elsewhere=elsewhere, sealer=Sealer(settings.job_key_path),
        )
        self.uploads = UploadService(
            runner=self.runner, repository=self.repository, ingest=self.ingest, node=node,
            min_free_bytes=settings.min_free_bytes, max_duration=settings.max_duration,
            update_in_progress=self.profile.update_in_progress, elsewhere=elsewhere,
        )
        self.packages = PackageService(runner=self.runner,
                                       repository=self.repository, node=node,
                                       in_use=self.profile.package_in_use)
        self.job_control = JobControl(self.runner)
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None
        self._updater: threading.Thread | None = None
        self._heart: threading.Thread | None = None
        self._watcher: threading.Thread | None = None

    def validation_policy(self) -> ValidationPolicy:
        """Read the trusted keys on every job, so operators can add keys without a restart."""
        return ValidationPolicy(
            require_signatures=self.settings.require_signatures,
            trusted_keys=load_trusted_keys(self.settings.trusted_keys_dir),
        )

    def start(self) -> None:
        """Clean up what this node's last process left behind, then start the job engine
        (which takes that process's jobs over at once) and housekeeping."""
        self.nodes.join()  # first: a name taken by a live node elsewhere stops us here,
        # before recovery would remove that node's staging as a dead predecessor's
        report = self.repository.recover(keep_staging=self._staged_by_active_jobs())
        if any(report.values()):
            log.warning("recovered after restart: %s", report)
        self._start_workers()
        self.runner.start_engine()
        self._janitor = threading.Thread(target=self._housekeeping, name="swdepot-janitor",
                                         daemon=True)
        self._janitor.start()
        self._updater = threading.Thread(target=self._advance_updates, name="swdepot-update",
                                         daemon=True)
        self._updater.start()
        self.authenticator.sync()
        self._watcher = threading.Thread(target=self._watch_users, name="swdepot-users",
                                         daemon=True)
        self._watcher.start()
        if self.nodes.clustered:
            self._heart = threading.Thread(target=self._heartbeat, name="swdepot-node",
                                           daemon=True)
            self._heart.start()

    def _start_workers(self) -> None:
        """Fork the zygote (before this service starts any thread: ``zygote.py``), then
        the worker processes through it, and emit what they log."""
        if self.workers is None:
            return
        channel = self._log_channel = LogChannel()
        role = intake_role(self._intake, channel, nice=self.settings.transfer_nice)
        zygote = Zygote.start({"intake": role}, keep=[channel.writer_fd])
        self._log_listener = forked.listen(channel)
        self.workers.start(zygote)

    def _intake(self, task: dict[str, Any], control: Control, events: IntakeEvents,
                body: Body) -> Intake:
        """A worker's task, to the service that knows its kind (runs in the worker)."""
        if task.get("kind") == "upload":
            return self.uploads.intake(task, control, events, body)
        return self.downloads.intake(task, control, events)

    def _staged_by_active_jobs(self) -> set[str]:
        """The staged uploads active jobs' checkpoints name: a taker-over continues them."""
        return {handle for job in self.jobs.list(visible_after=math.inf)
                if not job.state.terminal
                for handles in job.checkpoint.get("staged", []) for handle in handles}

    def _advance_updates(self) -> None:
        """Move a rolling update along; every process does this, the store arbitrates."""
        interval = max(0.02, min(1.0, self.settings.update_step_seconds / 4))
        while not self._stop.wait(interval):
            try:
                self.updates.tick()
            except Exception as exc:  # keep ticking; a failed tick is retried
                _round_failed("software update tick", exc)

    def _watch_users(self) -> None:
        """Forget cached verifications as soon as any process changed the users."""
        while not self._stop.wait(self.settings.credentials_check_seconds):
            try:
                if self.authenticator.sync():
                    log.info("the users changed: cached logins are verified again")
            except Exception as exc:  # the next look is soon
                _round_failed("users check", exc)

    def _heartbeat(self) -> None:
        """Tell the cluster this node is up, every third of a lease."""
        while not self._stop.wait(self.nodes.heartbeat_interval):
            try:
                self.nodes.beat()
            except Exception as exc:  # a busy database: the next beat is soon
                _round_failed("node heartbeat", exc)

    def _housekeeping(self) -> None:
        """Purge old jobs; now and then sweep what crashed processes left in the stores."""
        interval = max(1.0, min(60.0, self.settings.job_retention_seconds / 4))
        sweep_every = max(interval, min(self.settings.orphan_grace,
                                        self.settings.abandoned_staging_after) / 2)
        next_sweep = time.monotonic() + sweep_every
        while not self._stop.wait(interval):
            try:
                self.jobs.purge(time.time() - self.settings.job_retention_seconds)
            except Exception as exc:  # keep the janitor alive; it retries next round
                _round_failed("job purge", exc)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep_every
                try:
                    report = self.repository.recover(
                        keep_staging=self._staged_by_active_jobs(), own_leftovers=False)
                    if any(report.values()):
                        log.info("swept the stores: %s", report)
                except Exception as exc:
                    _round_failed("store sweep", exc)

    def job_visible_after(self) -> float:
        """Finished jobs are kept for the retention period, then they answer 404."""
        return time.time() - self.settings.job_retention_seconds

    def ensure_admin(self, out: TextIO = sys.stderr, *,
                     prehashed: PendingHash | None = None) -> None:
        """Set the admin password from settings, or generate one on first start.

        A generated password is printed once and only its hash is kept. ``prehashed``:
        the hash of :meth:`Settings.given_admin_password` begun earlier, used if that
        is still the password.
        """
        s = self.settings
        password = s.given_admin_password()
        if password is None and self.users.get(s.admin_user) is None:
            password = generated_password()
            print(f"swdepot: generated password for user {s.admin_user!r}: {password}\n"
                  "swdepot: it is shown only this once; only its hash is stored.", file=out,
                  flush=True)
        self.authenticator.forget()
        if password is not None:
            encoded = (prehashed.result() if prehashed is not None
                       and prehashed.password == password else hash_password(password))
            self.users.put(s.admin_user, encoded, ADMIN)
            # The password is known right here: the first request need not pay the slow
            # hash again (a quarter of a second of a CI job's start-up).
            self.authenticator.prime(s.admin_user, password, ADMIN)

    def close(self) -> None:
        self._stop.set()
        self.runner.shutdown(wait=True)
        for thread in (self._janitor, self._updater, self._heart, self._watcher):
            if thread is not None:
                thread.join(timeout=5)
        if self._janitor is not None:  # started: it had joined
            with contextlib.suppress(Exception):
                self.nodes.leave()
        if self.workers is not None:
            self.workers.close()
        if self._log_listener is not None:
            self._log_listener.stop()
            self._log_listener = None
        if self._log_channel is not None:
            self._log_channel.close()
            self._log_channel = None
        self.stores.close()
        self.lock.release()


def package_stores(settings: Settings, *, owner: str = "operator") -> list[BlobStore]:
    """The stores package copies go to (``settings.stores``, else the data directory's
    two); ``owner`` stages uploads apart from others (a node name for a service)."""
    names = (settings.cluster.nodes[0], settings.cluster.nodes[-1])
    return blob_stores(settings.stores, settings.store_roots, names, owner)


def open_repository(settings: Settings, catalog: PackageCatalog, *,
                    owner: str = "operator",
                    stores: Sequence[BlobStore] | None = None) -> Repository:
    """The catalog and the package stores, as the service and the operator commands use
    them (``stores``: those already opened, else :func:`package_stores` for ``owner``)."""
    return Repository(
        catalog, stores if stores is not None else package_stores(settings, owner=owner),
        orphan_grace=settings.orphan_grace, abandoned_after=settings.abandoned_staging_after,
    )


def ca_bundle(settings: Settings) -> Path | None:
    """The CA file libcurl verifies servers with: the system store plus the operator's CAs.

    This is swdepot's ``security certificate install -type server-ca``.
    """
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not settings.ca_files:
        return system if settings.use_system_ca and system.is_file() else None
    parts = []
    if settings.use_system_ca and system.is_file():
        parts.append(system.read_text())
    parts.extend(Path(f).read_text() for f in settings.ca_files)
    bundle = settings.tls_dir / "server-ca-bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text("\n".join(parts))
    return bundle


def _round_failed(what: str, exc: Exception) -> None:
    """Log a background round that failed (it is tried again): one line while the
    database cannot be reached, the traceback of anything else."""
    if isinstance(exc, Unavailable):
        log.warning("%s failed: %s", what, exc.message)
    else:
        log.error("%s failed", what, exc_info=exc)
