"""The manifest inside a swdepot package, its detached Ed25519 signature and trusted keys.

``cryptography`` is imported only where a key is loaded or a signature checked: it adds
about 10 MB to a process, and a service without trusted keys never needs it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from swdepot.packages.model import PackageInvalid
from swdepot.packages.naming import normalise_member_path

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
FORMAT_VERSION = 1
MAX_SIGNATURE_FILE_BYTES = 4096
SIGNATURE_BYTES = 64
TRUSTED_KEY_SUFFIXES = (".pem", ".pub")

_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_PRODUCT_CHARS = 128


@dataclass(frozen=True)
class FileEntry:
    """What the manifest promises about one file: its exact size and SHA-256."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A parsed, structurally valid manifest.json."""

    version: str
    product: str | None
    created: datetime | None
    files: Mapping[str, FileEntry]


class _ManifestError(ValueError):
    """A structural problem; turned into PackageInvalid by parse_manifest."""


def valid_version(version: object) -> TypeGuard[str]:
    """Whether a manifest version is acceptable; it becomes part of repository names and URLs."""
    return isinstance(version, str) and _VERSION.fullmatch(version) is not None


def parse_manifest(data: bytes, *, max_files: int) -> Manifest:
    """Parse and check manifest.json; every problem is a PackageInvalid naming it."""
    try:
        document = _load_json(data)
        return _manifest_from(document, max_files)
    except _ManifestError as exc:
        raise PackageInvalid.because(f"malformed {MANIFEST_NAME}: {exc}") from None


def render_manifest(
    *, version: str, product: str | None, created: datetime, files: Mapping[str, FileEntry]
) -> bytes:
    """The canonical manifest bytes the builder writes and signs: fixed key order, sorted files."""
    document: dict[str, Any] = {"format": FORMAT_VERSION}
    if product is not None:
        document["product"] = product
    document["version"] = version
    document["created"] = created.isoformat()
    document["files"] = {
        path: {"sha256": entry.sha256, "size": entry.size} for path, entry in sorted(files.items())
    }
    return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def _load_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys (they would let two readers see different files)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _ManifestError("not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise _ManifestError(f"invalid JSON ({exc})") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook that refuses repeated keys instead of silently keeping the last."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _ManifestError(f"duplicate key {json.dumps(key)}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    """parse_constant hook: NaN and Infinity are not JSON and have no meaning here."""
    raise _ManifestError(f"invalid constant {name}")


def _manifest_from(document: Any, max_files: int) -> Manifest:
    """Check the top-level fields; unknown extra keys are ignored for forward compatibility."""
    if not isinstance(document, dict):
        raise _ManifestError("not a JSON object")
    fmt = document.get("format")
    if type(fmt) is not int or fmt != FORMAT_VERSION:
        raise _ManifestError(f'"format" must be {FORMAT_VERSION}')
    version = document.get("version")
    if not valid_version(version):
        raise _ManifestError('"version" is missing or invalid')
    return Manifest(
        version=version,
        product=_product(document.get("product")),
        created=_created(document.get("created")),
        files=_files(document.get("files"), max_files),
    )


def _product(value: Any) -> str | None:
    """The optional product name: printable text, bounded so it fits in listings."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.isprintable()
        or not 0 < len(value) <= _MAX_PRODUCT_CHARS
    ):
        raise _ManifestError('"product" must be a non-empty printable string')
    return value


def _created(value: Any) -> datetime | None:
    """The optional creation time, which must be ISO-8601 if present."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise _ManifestError('"created" must be an ISO-8601 timestamp')


def _files(value: Any, max_files: int) -> dict[str, FileEntry]:
    """The file table: normalised member paths mapped to size and lowercase hex SHA-256."""
    if not isinstance(value, dict):
        raise _ManifestError('"files" must be an object')
    if len(value) > max_files:
        raise _ManifestError(f'"files" lists more than {max_files} files')
    files = {}
    for path, entry in value.items():
        if normalise_member_path(path) != path or path == "." or path in RESERVED_NAMES:
            raise _ManifestError(f"invalid file path {json.dumps(path)}")
        files[path] = _file_entry(path, entry)
    return files


def _file_entry(path: str, entry: Any) -> FileEntry:
    """One row of the file table."""
    if not isinstance(entry, dict):
        raise _ManifestError(f"entry for {json.dumps(path)} must be an object")
    sha256, size = entry.get("sha256"), entry.get("size")
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise _ManifestError(f"entry for {json.dumps(path)} needs a lowercase hex sha256")
    if type(size) is not int or size < 0:
        raise _ManifestError(f"entry for {json.dumps(path)} needs a non-negative integer size")
    return FileEntry(sha256=sha256, size=size)


def encode_signature(signature: bytes) -> bytes:
    """manifest.json.sig contents: base64 of the raw signature and a newline."""
    return base64.b64encode(signature) + b"\n"


def decode_signature(data: bytes) -> bytes:
    """The raw 64-byte signature from manifest.json.sig; surrounding whitespace is tolerated."""
    try:
        signature = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != SIGNATURE_BYTES:
        raise PackageInvalid.because(
            f"malformed {SIGNATURE_NAME}: expected base64 of a {SIGNATURE_BYTES}-byte signature"
        )
    return signature


def find_signer(
    manifest_bytes: bytes, signature: bytes, trusted_keys: Mapping[str, Ed25519PublicKey]
) -> str:
    """The name of the trusted key that made the signature; sorted so the answer is stable."""
    from cryptography.exceptions import InvalidSignature

    for name in sorted(trusted_keys):
        try:
            trusted_keys[name].verify(signature, manifest_bytes)
        except InvalidSignature:
            continue
        return name
    raise PackageInvalid.because("the signature does not match any trusted key")


def load_trusted_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys from ``*.pem`` / ``*.pub`` files in ``directory``, named by stem.

    A missing directory means "no trusted keys"; a key file that is not an Ed25519 PEM
    SubjectPublicKeyInfo, or two files with the same stem, is a configuration error and
    raises ValueError naming the file. Other files (README, backups) are ignored so the
    directory can be documented in place.
    """
    if not directory.exists():
        return {}
    if not directory.is_dir():
        raise ValueError(f"{directory}: trusted key location is not a directory")
    keys: dict[str, Ed25519PublicKey] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in TRUSTED_KEY_SUFFIXES or not path.is_file():
            continue
        if path.stem in keys:
            raise ValueError(f"{path}: another file already defines trusted key {path.stem!r}")
        keys[path.stem] = _load_public_key(path)
    return keys


def _load_public_key(path: Path) -> Ed25519PublicKey:
    """One trusted key file; anything but an Ed25519 public key is refused."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key
