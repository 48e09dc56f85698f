"""Package metadata records and the narrow interface they are kept behind.

A package is *visible* exactly when its record is in the catalog; blobs without a
record are orphans that recovery removes. Uniqueness (file name; image version) is
enforced by the catalog so it holds across processes and nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from swdepot.jobs.model import iso
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

    def to_ontap(self) -> dict[str, Any]:
        """``software_package`` as ONTAP shows it, plus swdepot's extra fields."""
        return {
            "version": self.version,
            "create_time": iso(self.create_time),
            "file_name": self.file_name,
            "kind": str(self.kind),
            "size": self.size,
            "sha256": self.sha256,
            "product": self.product,
            "signer": self.signer,
            "_links": {"self": {"href": f"/api/cluster/software/packages/{self.version}"}},
        }


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
