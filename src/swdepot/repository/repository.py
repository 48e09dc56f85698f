"""The package repository: every package on two node stores, visible once recorded.

Publishing follows one order so that a crash at any point leaves nothing half-done
visible: write both copies to staging → commit both blobs under a fresh key → insert
the catalog record. Only the record makes a package visible; blobs without one are
orphans that :meth:`Repository.recover` removes. Deleting runs the other way round:
record first, blobs after.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swdepot.errors import (
    FIRMWARE_EXISTS,
    PACKAGE_NAME_EXISTS,
    REPOSITORY_PLACEMENT_FAILED,
    Conflict,
    InternalError,
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


def duplicate_name_error(file_name: str, kind: PackageKind | None) -> Conflict:
    """ONTAP's duplicate errors; clients match on the leading sentence."""
    if kind is PackageKind.FIRMWARE:
        return Conflict(FIRMWARE_EXISTS, f'{FIRMWARE_SAME_NAME} ("{file_name}")', target="url")
    return Conflict(PACKAGE_NAME_EXISTS, f'{SAME_NAME} ("{file_name}")', target="url")


def duplicate_version_error(version: str) -> Conflict:
    return Conflict(PACKAGE_NAME_EXISTS,
                    f'{SAME_NAME} (version "{version}" is already in the repository)',
                    target="url")


def placement_failed(reason: str) -> InternalError:
    return InternalError(REPOSITORY_PLACEMENT_FAILED, f"{PLACEMENT_FAILED} ({reason})")


@dataclass
class Staged:
    """Uploads in flight to every store, written in lock-step by the transfer sink."""

    uploads: list[Upload]

    def abort(self) -> None:
        for upload in self.uploads:
            upload.abort()


class Repository:
    """Publishes, lists and deletes packages across the node stores."""

    def __init__(self, catalog: PackageCatalog, stores: Sequence[BlobStore],
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.stores = tuple(stores)
        self._clock = clock

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

    def check_name_free(self, file_name: str) -> None:
        """Refuse early, before any byte moves, when the file name is taken."""
        existing = self.catalog.by_file_name(file_name)
        if existing is not None:
            raise duplicate_name_error(file_name, existing.kind)

    def publish(self, staged: Staged, info: PackageInfo, sha256: str, size: int) -> PackageRecord:
        """Commit both copies and record the package; on any failure nothing is visible."""
        self.check_name_free(info.file_name)
        if info.kind is PackageKind.IMAGE and self.catalog.by_version(info.version):
            raise duplicate_version_error(info.version)
        record_id = str(uuid.uuid4())
        record = PackageRecord(
            id=record_id, version=info.version, file_name=info.file_name, kind=info.kind,
            size=size, sha256=sha256, create_time=self._clock(),
            store_key=f"packages/{record_id}/{info.file_name}", product=info.product,
            signer=info.signer,
        )
        committed: list[BlobStore] = []
        try:
            for store, upload in zip(self.stores, staged.uploads, strict=True):
                upload.commit(record.store_key)
                committed.append(store)
        except OSError as exc:
            staged.abort()
            self._delete_blobs(record.store_key, committed)
            raise placement_failed(f"{exc.strerror or exc}") from exc
        try:
            self.catalog.add(record)
        except (DuplicateName, DuplicateVersion) as exc:  # lost a race with another node
            self._delete_blobs(record.store_key, committed)
            if isinstance(exc, DuplicateName):
                raise duplicate_name_error(info.file_name, info.kind) from None
            raise duplicate_version_error(info.version) from None
        except BaseException:
            self._delete_blobs(record.store_key, committed)
            raise
        return record

    def delete(self, record: PackageRecord) -> None:
        """Hide the package (record first), then remove both copies."""
        self.catalog.remove(record.id)
        self._delete_blobs(record.store_key, self.stores)

    def _delete_blobs(self, key: str, stores: Sequence[BlobStore]) -> None:
        for store in stores:
            try:
                store.delete(key)
            except OSError:  # recovery removes the orphan later
                log.warning("could not delete %s from store %s", key, store.name)

    def copies_intact(self, record: PackageRecord) -> dict[str, bool]:
        """Re-read every node's copy: present, and its sha256 still the recorded one."""
        return {store.name: _intact(store, record) for store in self.stores}

    def copy_intact(self, record: PackageRecord, node: str) -> bool:
        """The copy a node installs from: its own store, else the primary one."""
        store = next((s for s in self.stores if s.name == node), self.stores[0])
        return _intact(store, record)

    def free_bytes(self) -> int | None:
        """The smallest room left on any node store (a package needs it on every one)."""
        known = [free for store in self.stores if (free := store.free_bytes()) is not None]
        return min(known) if known else None

    def images(self) -> list[PackageRecord]:
        return self.catalog.all(PackageKind.IMAGE)

    def recover(self) -> dict[str, int]:
        """Bring the stores in line with the catalog after a crash or restart."""
        known = {r.store_key for r in self.catalog.all()}
        staging = orphans = 0
        for store in self.stores:
            staging += store.clean_staging()
            for key in list(store.keys()):
                if key not in known:
                    with contextlib.suppress(OSError):
                        store.delete(key)
                        orphans += 1
        return {"staging_removed": staging, "orphans_removed": orphans}


def _intact(store: BlobStore, record: PackageRecord) -> bool:
    try:
        return store.exists(record.store_key) and store.sha256(record.store_key) == record.sha256
    except OSError:
        return False
