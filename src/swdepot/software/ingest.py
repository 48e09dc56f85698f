"""Taking one package into the repository, whichever way its bytes arrive.

A download (the bytes come from a URL) and an upload (they come in the request body)
differ only in their source. Everything after that is this one path: stage on every
node store, hash and inspect in the same pass, then publish — or throw it all away.
"""

from __future__ import annotations

from collections.abc import Callable

from swdepot import testpoints
from swdepot.jobs.runner import JobContext
from swdepot.packages.inspect import PackageInspector
from swdepot.packages.model import ValidationPolicy
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository, Staged
from swdepot.transfer.sink import PackageSink

PROCESSING = "Package processing in progress"

Feed = Callable[[PackageSink], None]


class PackageIngest:
    """Streams a package into staging, validates it and publishes it."""

    def __init__(self, repository: Repository, policy: Callable[[], ValidationPolicy],
                 max_package_bytes: int, *, nice: int = 0) -> None:
        self._repository = repository
        self._policy = policy
        self._max_bytes = max_package_bytes
        self._nice = nice  # CPU priority of the pipeline's threads (swdepot/priority.py)

    @property
    def max_package_bytes(self) -> int:
        return self._max_bytes

    def receive(self, ctx: JobContext, file_name: str, feed: Feed) -> PackageRecord:
        """Run ``feed`` to write the bytes, then publish; nothing stays behind on failure.

        The trusted keys are read per package, so operators can add keys without a restart.
        """
        policy = self._policy()
        sink = PackageSink(lambda: self._repository.stage().uploads,
                           lambda: PackageInspector(file_name, policy, nice=self._nice),
                           self._max_bytes, nice=self._nice)
        try:
            feed(sink)
            ctx.report(PROCESSING, bytes_done=sink.bytes_written,
                       bytes_total=sink.bytes_written, force=True)
            testpoints.reached("download.transferred")
            sink.finish()
            info = sink.inspector.finish()
        except BaseException:
            sink.abort()
            raise
        staged = Staged(list(sink.uploads))
        try:
            record = self._repository.publish(staged, info, sink.sha256, sink.bytes_written)
        except BaseException:
            staged.abort()
            raise
        testpoints.reached("download.published")
        return record
