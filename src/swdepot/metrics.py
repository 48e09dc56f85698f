"""Prometheus metrics: what the service did (counters) and what it holds (read at scrape).

Each :class:`Service` owns its own :class:`Metrics` and registry, never the library's
global one, so tests run many services side by side. Two kinds of figure:

- Events of this process (jobs started and finished, bytes moved, HTTP requests)
  are counters here, observed on the job store's writes by :class:`MeteredJobStore`
  — every state change of every job passes through the store, so no domain code
  needs a hook. Prometheus sums counters across processes.
- State shared by all processes (repository size and package count, the running
  download's progress) is read from the catalog and job store at scrape time, so
  every process reports the same truth however many there are.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from swdepot.jobs.model import Job, JobKind, JobState, Progress
from swdepot.jobs.store import JobStore
from swdepot.packages.model import PackageKind
from swdepot.repository.catalog import PackageCatalog

CONTENT_TYPE = CONTENT_TYPE_LATEST
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_SPEED_BUCKETS = tuple(float(1 << n) for n in range(16, 34, 2))  # 64 KiB/s .. 8 GiB/s
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """The metric families of one service and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.downloads_started = Counter(
            "swdepot_downloads_started", "Package downloads started (jobs created).", registry=r)
        self.downloads_succeeded = Counter(
            "swdepot_downloads_succeeded", "Package downloads that published a package.",
            registry=r)
        self.downloads_failed = Counter(
            "swdepot_downloads_failed", "Package downloads that failed, by ONTAP error code.",
            ["code"], registry=r)
        self.transfer_bytes = Counter(
            "swdepot_transfer_bytes", "Bytes received by package transfers, by job kind.",
            ["kind"], registry=r)
        self.download_speed = Histogram(
            "swdepot_download_speed_bytes_per_second",
            "Average speed of each successful download, transfer and validation included.",
            buckets=_SPEED_BUCKETS, registry=r)
        self.job_duration = Histogram(
            "swdepot_job_duration_seconds", "Time from a job's start to its end.",
            ["kind", "state"], buckets=_DURATION_BUCKETS, registry=r)
        self.http_requests = Counter(
            "swdepot_http_requests", "HTTP requests, by method, route template and status.",
            ["method", "route", "status"], registry=r)
        self.http_duration = Histogram(
            "swdepot_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["route"], buckets=_HTTP_BUCKETS, registry=r)
        # (method, route, status) -> its two children: labels() costs more than the
        # increment it leads to, and every request would pay it twice. The key space
        # is small: route templates, httptools' known methods and HTTP statuses.
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def watch(self, jobs: JobStore, catalog: PackageCatalog) -> None:
        """Report the shared state (repository, running download) at every scrape."""
        self.registry.register(StateCollector(jobs, catalog))

    def render(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)

    # --- job events (called by MeteredJobStore) ---------------------------------------------

    def job_started(self, job: Job) -> None:
        if job.kind is JobKind.DOWNLOAD:
            self.downloads_started.inc()

    def bytes_moved(self, kind: str, count: int) -> None:
        if count > 0:
            self.transfer_bytes.labels(kind).inc(count)

    def job_finished(self, job: Job) -> None:
        begin = job.start_time if job.start_time is not None else job.created_at
        duration = max(0.0, (job.end_time or begin) - begin)
        self.job_duration.labels(str(job.kind), str(job.state)).observe(duration)
        if job.kind is not JobKind.DOWNLOAD:
            return
        if job.state is JobState.SUCCESS:
            self.downloads_succeeded.inc()
            if duration > 0 and job.progress.bytes_done:
                self.download_speed.observe(job.progress.bytes_done / duration)
        else:
            self.downloads_failed.labels(str(job.code)).inc()

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(route))
        children[0].inc()
        children[1].observe(seconds)


class MeteredJobStore:
    """A :class:`JobStore` that tells :class:`Metrics` about the writes passing through it.

    Byte counts come from progress reports as differences, so a transfer that is
    reported many times counts its bytes once; a report that goes backwards (a transfer
    starting over) restarts the baseline.
    """

    def __init__(self, inner: JobStore, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, int]] = {}  # uuid -> (kind, bytes counted)

    # --- reads and lease bookkeeping: straight through -----------------------------------

    def get(self, uuid: str) -> Job | None:
        return self._inner.get(uuid)

    def list(self, *, visible_after: float) -> list[Job]:
        return self._inner.list(visible_after=visible_after)

    def latest(self, kind: JobKind) -> Job | None:
        return self._inner.latest(kind)

    def active(self, kind: JobKind) -> Job | None:
        return self._inner.active(kind)

    def purge(self, ended_before: float) -> int:
        return self._inner.purge(ended_before)

    def claim(self, owner: str, node: str, kinds: Collection[JobKind], now: float,
              lease_until: float) -> Job | None:
        job = self._inner.claim(owner, node, kinds, now, lease_until)
        if job is not None:
            with self._lock:
                self._seen.setdefault(job.uuid, (str(job.kind), job.progress.bytes_done))
        return job

    def renew(self, owner: str, lease_until: float) -> set[str]:
        return self._inner.renew(owner, lease_until)

    def release(self, uuid: str, owner: str) -> None:
        self._inner.release(uuid, owner)

    def request_cancel(self, uuid: str) -> bool:
        return self._inner.request_cancel(uuid)

    def cancel_requests(self, owner: str) -> set[str]:
        return self._inner.cancel_requests(owner)

    def save_checkpoint(self, uuid: str, owner: str, checkpoint: dict[str, Any]) -> None:
        self._inner.save_checkpoint(uuid, owner, checkpoint)

    # --- the writes that are counted --------------------------------------------------

    def insert(self, job: Job, *, exclusive: bool = False, owner: str | None = None,
               lease_until: float | None = None) -> None:
        self._inner.insert(job, exclusive=exclusive, owner=owner, lease_until=lease_until)
        with self._lock:
            self._seen[job.uuid] = (str(job.kind), 0)
        self._metrics.job_started(job)

    def set_progress(self, uuid: str, message: str | None, progress: Progress, *,
                     owner: str | None = None) -> None:
        self._inner.set_progress(uuid, message, progress, owner=owner)
        with self._lock:
            kind, counted = self._seen.get(uuid, ("", 0))
            if kind:
                self._seen[uuid] = (kind, progress.bytes_done)
        if kind:
            self._metrics.bytes_moved(kind, progress.bytes_done - counted)

    def transition(self, uuid: str, state: JobState, message: str, code: int = 0, *,
                   start_time: float | None = None, end_time: float | None = None,
                   owner: str | None = None) -> None:
        self._inner.transition(uuid, state, message, code, start_time=start_time,
                               end_time=end_time, owner=owner)
        if not state.terminal:
            return
        with self._lock:
            self._seen.pop(uuid, None)
        job = self._inner.get(uuid)
        if job is not None:
            self._metrics.job_finished(job)


class StateCollector(Collector):
    """Repository and download figures read from the shared stores at scrape time."""

    def __init__(self, jobs: JobStore, catalog: PackageCatalog) -> None:
        self._jobs = jobs
        self._catalog = catalog

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        packages, size, active, done, total, speed = self._families()
        for kind in PackageKind:
            records = self._catalog.all(kind)
            packages.add_metric([str(kind)], len(records))
            size.add_metric([str(kind)], sum(r.size for r in records))
        job = self._jobs.latest(JobKind.DOWNLOAD)
        running = job is not None and not job.state.terminal
        active.add_metric([], 1 if running else 0)
        progress = job.progress if job is not None and running else Progress()
        done.add_metric([], progress.bytes_done)
        total.add_metric([], progress.bytes_total or 0)
        speed.add_metric([], progress.speed)
        yield from (packages, size, active, done, total, speed)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("swdepot_repository_packages", "Packages in the repository, by "
                              "kind.", labels=["kind"]),
            GaugeMetricFamily("swdepot_repository_bytes", "Bytes of packages in the repository "
                              "(one copy), by kind.", labels=["kind"]),
            GaugeMetricFamily("swdepot_download_active", "1 while a package download runs."),
            GaugeMetricFamily("swdepot_download_bytes_done", "Bytes received by the running "
                              "download."),
            GaugeMetricFamily("swdepot_download_bytes_total", "Size of the running download's "
                              "package, when the server announced it (else 0)."),
            GaugeMetricFamily("swdepot_download_speed_current_bytes_per_second",
                              "Current speed of the running download."),
        )
