"""Package metadata records and the narrow interface they are kept behind.

A package is *visible* exactly when its record is in the catalog; blobs without a
record are orphans that recovery removes. Uniqueness (file name; image version) is
enforced by the catalog so it holds across processes and nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from swdepot.packages.model import PackageKind


@dataclass(frozen=True)
class PackageRecord:
    """What the repository knows about one stored package."""

    id: str
    version: str
    file_name: str
    kind: PackageKind
    size: int
    sha256: str
    create_time: float
    store_key: str
    product: str | None = None
    signer: str | None = None


class DuplicateName(Exception):
    """A package with the same file name is already stored."""


class DuplicateVersion(Exception):
    """An image of the same version is already stored."""


class PackageCatalog(Protocol):
    def add(self, record: PackageRecord) -> None:
        """Insert; raise :class:`DuplicateName` or :class:`DuplicateVersion`."""

    def remove(self, record_id: str) -> bool: ...

    def by_version(self, version: str) -> PackageRecord | None:
        """The image with this version (firmware is keyed by file name instead)."""

    def by_file_name(self, file_name: str) -> PackageRecord | None: ...

    def by_id(self, record_id: str) -> PackageRecord | None: ...

    def all(self, kind: PackageKind | None = None) -> list[PackageRecord]: ...
