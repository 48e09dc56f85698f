"""Value types shared by the package subsystem: what a package is and how strictly to check it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from swdepot.errors import PACKAGE_PROCESSING_FAILED, InvalidInput

if TYPE_CHECKING:  # cryptography is loaded only where keys are (packages/manifest.py)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MiB = 1024 * 1024
GiB = 1024 * MiB

FAILURE_PREFIX = "Failed to process the package: "


class PackageInvalid(InvalidInput):
    """A package failed validation; ONTAP reports every such failure as code 10551359."""

    def __init__(self, message: str) -> None:
        super().__init__(PACKAGE_PROCESSING_FAILED, message)

    @classmethod
    def because(cls, reason: str) -> PackageInvalid:
        """Build the error from the specific problem so every message has the same prefix."""
        return cls(FAILURE_PREFIX + reason)


class PackageKind(StrEnum):
    """What a downloaded file turned out to be; decides where the repository files it."""

    IMAGE = "image"
    FIRMWARE = "firmware"


@dataclass(frozen=True)
class PackageInfo:
    """The outcome of a successful validation, recorded with the package in the repository."""

    kind: PackageKind
    version: str  # the image version; for firmware the file name (firmware carries no version)
    product: str | None
    signer: str | None  # name of the trusted key that verified the manifest signature
    file_name: str
    files: int  # payload files in the archive (manifest and signature excluded); 0 for firmware


@dataclass(frozen=True)
class ValidationPolicy:
    """Limits and trust settings; defaults accept real ONTAP images (a few GiB) but stop bombs."""

    require_signatures: bool = False
    trusted_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    max_unpacked_bytes: int = 64 * GiB
    max_ratio: float = 200.0
    max_members: int = 100_000
    max_manifest_bytes: int = 4 * MiB
    # The ratio is only judged after this many unpacked bytes: small, highly compressible
    # packages (text, zero padding) are harmless and would otherwise trip it.
    ratio_check_after_bytes: int = 64 * MiB
