"""The package repository: every package on two node stores, visible once recorded.

Publishing follows one order so that a crash at any point leaves nothing half-done
visible: write both copies to staging → commit both blobs under a fresh key → insert
the catalog record. Only the record makes a package visible; blobs without one are
orphans that :meth:`Repository.recover` removes. Deleting runs the other way round:
record first, blobs after.

Several processes share the stores, so clean-up never takes another live process's
work: a blob counts as an orphan only once it has been unreferenced for longer than
any publish takes between committing it and recording it (``orphan_grace``), and
another owner's staged upload only once nobody has written it for ``abandoned_after``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from swdepot import testpoints
from swdepot.errors import (
    FIRMWARE_EXISTS,
    PACKAGE_NAME_EXISTS,
    REPOSITORY_PLACEMENT_FAILED,
    Conflict,
    InternalError,
    Unavailable,
)
from swdepot.packages.model import PackageInfo, PackageKind
from swdepot.repository.catalog import (
    DuplicateName,
    DuplicateVersion,
    PackageCatalog,
    PackageRecord,
)
from swdepot.repository.store import BlobStore, Upload

log = logging.getLogger(__name__)

SAME_NAME = "Package image with the same name already exists."
FIRMWARE_SAME_NAME = "Firmware file already exists."
PLACEMENT_FAILED = "Failed to set primary and secondary nodes to store new image."


def duplicate_name_error(file_name: str, kind: PackageKind | None, *,
                         target: str = "url") -> Conflict:
    """ONTAP's duplicate errors; clients match on the leading sentence. ``target``: the
    input that named the file (a download's ``url``, an upload's ``file``)."""
    if kind is PackageKind.FIRMWARE:
        return Conflict(FIRMWARE_EXISTS, f'{FIRMWARE_SAME_NAME} ("{file_name}")', target=target)
    return Conflict(PACKAGE_NAME_EXISTS, f'{SAME_NAME} ("{file_name}")', target=target)


def duplicate_version_error(version: str) -> Conflict:
    return Conflict(PACKAGE_NAME_EXISTS,
                    f'{SAME_NAME} (version "{version}" is already in the repository)',
                    target="url")


def placement_failed(reason: str) -> InternalError:
    return InternalError(REPOSITORY_PLACEMENT_FAILED, f"{PLACEMENT_FAILED} ({reason})")


@dataclass(frozen=True)
class DamagedCopy:
    """One node copy that is missing or does not match its recorded sha256."""

    file_name: str
    store: str
    problem: str  # "missing", "corrupt" or "unreachable" (the store cannot be read)
    repaired_from: str | None = None


@dataclass
class VerifyReport:
    """What :meth:`Repository.verify` found (and repaired)."""

    packages: int = 0
    damaged: list[DamagedCopy] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # file names without any intact copy
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (store, key), no record
    orphans_removed: bool = False

    @property
    def healthy(self) -> bool:
        """True when every package has all its copies intact (now) and nothing is stray."""
        return (not self.lost and all(d.repaired_from for d in self.damaged)
                and (not self.orphans or self.orphans_removed))


@dataclass
class Staged:
    """Uploads in flight to every store, written in lock-step by the transfer sink."""

    uploads: list[Upload]

    def abort(self) -> None:
        for upload in self.uploads:
            upload.abort()


class Repository:
    """Publishes, lists and deletes packages across the node stores."""

    ORPHAN_GRACE = 600.0  # seconds: far longer than committing blobs and recording them
    ABANDONED_AFTER = 7200.0  # seconds: twice the longest a transfer may take (1 hour)

    def __init__(self, catalog: PackageCatalog, stores: Sequence[BlobStore],
                 clock: Callable[[], float] = time.time, *,
                 orphan_grace: float = ORPHAN_GRACE,
                 abandoned_after: float = ABANDONED_AFTER) -> None:
        self.catalog = catalog
        self.stores = tuple(stores)
        self._clock = clock
        self._orphan_grace = orphan_grace
        self._abandoned_after = abandoned_after

    def stage(self) -> Staged:
        """Open an upload on every store; fail with 10551859 if any store refuses."""
        uploads: list[Upload] = []
        try:
            for store in self.stores:
                uploads.append(store.begin())
        except OSError as exc:
            Staged(uploads).abort()
            raise placement_failed(f"{exc.strerror or exc}") from exc
        return Staged(uploads)

    def adopt(self, handles: Sequence[str]) -> Staged:
        """The uploads another process staged (one handle per store, in store order)."""
        if len(handles) != len(self.stores):
            raise ValueError(f"{len(handles)} upload handles for {len(self.stores)} stores")
        return Staged([store.adopt(handle) for store, handle in zip(self.stores, handles,
                                                                    strict=True)])

    def discard_staged(self, handle_sets: Sequence[Sequence[str]]) -> None:
        """Remove uploads a process (perhaps one that died) staged: one handle per store,
        in store order, per set. Ones already gone or never made are skipped."""
        for handles in handle_sets:
            for store, handle in zip(self.stores, handles, strict=False):
                with contextlib.suppress(OSError, ValueError):
                    store.adopt(handle).abort()

    def staged_length(self, handles: Sequence[str]) -> int:
        """How many bytes every store's staged upload holds at least (0 if any is gone)."""
        if len(handles) != len(self.stores):
            return 0
        try:
            return min(store.staged_size(h) for store, h in zip(self.stores, handles,
                                                                 strict=True))
        except (OSError, ValueError):
            return 0

    def resume_staged(self, handles: Sequence[str], length: int) -> Staged:
        """The uploads a process that is gone staged, each cut to ``length`` bytes and
        ready to be written on."""
        if len(handles) != len(self.stores):
            raise ValueError(f"{len(handles)} upload handles for {len(self.stores)} stores")
        uploads: list[Upload] = []
        try:
            for store, handle in zip(self.stores, handles, strict=True):
                uploads.append(store.resume(handle, length))
        except BaseException:
            Staged(uploads).abort()  # cannot continue: a fresh start needs none of them
            raise
        return Staged(uploads)

    def check_name_free(self, file_name: str, *, target: str = "url") -> None:
        """Refuse early, before any byte moves, when the file name is taken."""
        existing = self.catalog.by_file_name(file_name)
        if existing is not None:
            raise duplicate_name_error(file_name, existing.kind, target=target)

    def publish(self, staged: Staged, info: PackageInfo, sha256: str, size: int, *,
                record_id: str | None = None) -> PackageRecord:
        """Commit both copies and record the package; on any failure nothing is visible.

        ``record_id`` (the job's uuid) names the blobs before they are recorded, so
        whoever recovers the job can remove them at once with :meth:`discard_unrecorded`
        should the publisher die in between.
        """
        self.check_name_free(info.file_name)
        if info.kind is PackageKind.IMAGE and self.catalog.by_version(info.version):
            raise duplicate_version_error(info.version)
        record_id = record_id or str(uuid.uuid4())
        record = PackageRecord(
            id=record_id, version=info.version, file_name=info.file_name, kind=info.kind,
            size=size, sha256=sha256, create_time=self._clock(),
            store_key=_store_key(record_id, info.file_name), product=info.product,
            signer=info.signer,
        )
        committed: list[BlobStore] = []
        try:
            for store, upload in zip(self.stores, staged.uploads, strict=True):
                upload.commit(record.store_key)
                committed.append(store)
                testpoints.reached("publish.blob_committed")
        except OSError as exc:
            staged.abort()
            self._delete_blobs(record.store_key, committed)
            raise placement_failed(f"{exc.strerror or exc}") from exc
        testpoints.reached("publish.blobs_committed")
        try:
            self.catalog.add(record)
        except (DuplicateName, DuplicateVersion) as exc:  # lost a race with another node
            self._delete_blobs(record.store_key, committed)
            if isinstance(exc, DuplicateName):
                raise duplicate_name_error(info.file_name, info.kind) from None
            raise duplicate_version_error(info.version) from None
        except Unavailable:
            # whether the record was written is unknown (the connection broke): the
            # blobs stay, and whoever takes the job over keeps or removes them by what
            # the catalog says then (discard_unrecorded)
            raise
        except BaseException:
            self._delete_blobs(record.store_key, committed)
            raise
        return record

    def discard_unrecorded(self, record_id: str, file_name: str) -> bool:
        """Remove the blobs a publish under ``record_id`` committed, unless it recorded
        them; True if there was no record (whatever blobs existed are gone)."""
        if self.catalog.by_id(record_id) is not None:
            return False
        key = _store_key(record_id, file_name)
        for store in self.stores:
            try:
                if store.exists(key):
                    store.delete(key)
            except (OSError, ValueError):
                log.warning("could not delete %s from store %s", key, store.name)
        return True

    def remove_blobs(self, store_key: str) -> None:
        """Finish an unlisted package's delete: remove its blobs from every store."""
        if any(r.store_key == store_key for r in self.catalog.all()):
            raise ValueError(f"{store_key} is still recorded")
        self._delete_blobs(store_key, self.stores)

    def delete(self, record: PackageRecord) -> None:
        """Hide the package (record first), then remove both copies."""
        self.catalog.remove(record.id)
        testpoints.reached("delete.unlisted")
        self._delete_blobs(record.store_key, self.stores)

    def _delete_blobs(self, key: str, stores: Sequence[BlobStore]) -> None:
        for store in stores:
            try:
                store.delete(key)
            except OSError:  # recovery removes the orphan later
                log.warning("could not delete %s from store %s", key, store.name)
            testpoints.reached("delete.blob_deleted")

    def copy_problems(self, record: PackageRecord) -> dict[str, str | None]:
        """Re-read every node's copy: None where it is present with the recorded sha256,
        else ``"missing"``, ``"corrupt"`` or ``"unreachable"`` (its store does not answer)."""
        return {store.name: self._copy_problem(store, record) for store in self.stores}

    def copy_intact(self, record: PackageRecord, node: str) -> bool:
        """The copy a node installs from: its own store, else the primary one."""
        return self.intact_copy(record, node) is not None

    def intact_copy(self, record: PackageRecord, node: str) -> BlobStore | None:
        """The store a node reads a package from: its own store (else the primary one),
        or, while that store cannot be reached, another store with an intact copy. A
        copy that is missing or corrupt in a store that answers is no copy: None."""
        own = next((s for s in self.stores if s.name == node), self.stores[0])
        problem = self._copy_problem(own, record)
        if problem is None:
            return own
        if problem != "unreachable":
            return None
        return next((s for s in self.stores if s is not own and _intact(s, record)), None)

    def free_bytes(self) -> int | None:
        """The smallest room left on any node store (a package needs it on every one)."""
        known = [free for store in self.stores if (free := store.free_bytes()) is not None]
        return min(known) if known else None

    def images(self) -> list[PackageRecord]:
        return self.catalog.all(PackageKind.IMAGE)

    def recover(self, *, keep_staging: Collection[str] = (),
                own_leftovers: bool = True) -> dict[str, int]:
        """Bring the stores in line with the catalog after a crash or restart.

        Removes abandoned staging and orphans and, with ``own_leftovers`` (at start-up,
        under the node lock), all of this owner's staging; never ``keep_staging``, the
        handles of uploads a job will resume. Without ``own_leftovers`` it is the
        periodic sweep a running service may do at any time.
        """
        now = self._clock()
        staging = sum(store.clean_staging(keep=keep_staging,
                                          abandoned_before=now - self._abandoned_after,
                                          own_leftovers=own_leftovers)
                      for store in self.stores)
        orphans = 0
        for store, key in self._orphans(now):
            with contextlib.suppress(OSError):
                store.delete(key)
                orphans += 1
        return {"staging_removed": staging, "orphans_removed": orphans}

    def _orphans(self, now: float) -> list[tuple[BlobStore, str]]:
        """Blobs no record names, unreferenced for longer than a publish can take.

        The catalog is read after the stores are listed: a blob committed and recorded
        in between is then known, never taken for an orphan.
        """
        listed: list[tuple[BlobStore, str]] = []
        for store in self.stores:
            try:
                listed.extend((store, key) for key in list(store.keys()))
            except OSError as exc:  # a store that is down has no orphans to remove now
                log.warning("cannot list store %s: %s", store.name, exc)
        known = {r.store_key for r in self.catalog.all()}
        found = []
        for store, key in listed:
            if key in known:
                continue
            try:
                if store.changed(key) > now - self._orphan_grace:
                    continue  # perhaps a publish of another process, about to record it
            except OSError:
                continue  # gone already
            found.append((store, key))
        return found


    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Check every copy against its recorded sha256; optionally repair from a good one.

        Reads every byte of every copy, so it is an operator command, not a request path.
        With ``repair`` a missing or corrupt copy is rewritten (atomically, through the
        store's own upload) from an intact copy, and blobs without a record are removed.
        """
        report = VerifyReport()
        for record in self.catalog.all():
            report.packages += 1
            good: list[BlobStore] = []
            bad: list[tuple[BlobStore, str]] = []
            for store in self.stores:
                problem = self._copy_problem(store, record)
                if problem is None:
                    good.append(store)
                else:
                    bad.append((store, problem))
            if not good:
                report.lost.append(record.file_name)
            for store, problem in bad:
                source = good[0] if repair and good else None
                if source is not None and not self._repair(record, source, store):
                    source = None
                report.damaged.append(DamagedCopy(record.file_name, store.name, problem,
                                                  source.name if source else None))
        for store, key in self._orphans(self._clock()):
            report.orphans.append((store.name, key))
            if repair:  # not recover(): staging files may belong to a running download
                self._delete_blobs(key, [store])
        report.orphans_removed = repair
        return report

    @staticmethod
    def _copy_problem(store: BlobStore, record: PackageRecord) -> str | None:
        try:
            if not store.exists(record.store_key):
                return "missing"
            return None if store.sha256(record.store_key) == record.sha256 else "corrupt"
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "unreachable"

    def _repair(self, record: PackageRecord, source: BlobStore, target: BlobStore) -> bool:
        """Copy an intact blob over a bad one; True only if the new copy checks out."""
        try:
            upload = target.begin()
            try:
                with source.open(record.store_key) as fh:
                    while block := fh.read(1 << 20):
                        upload.write(block)
                upload.commit(record.store_key)
            except BaseException:
                upload.abort()
                raise
            return target.sha256(record.store_key) == record.sha256
        except OSError as exc:
            log.error("could not repair %s on %s: %s", record.file_name, target.name, exc)
            return False


def _store_key(record_id: str, file_name: str) -> str:
    return f"packages/{record_id}/{file_name}"


def _intact(store: BlobStore, record: PackageRecord) -> bool:
    return Repository._copy_problem(store, record) is None
