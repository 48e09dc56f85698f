"""Build swdepot packages (for tests, demos and operators) and manage signing keys."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from swdepot.packages.manifest import (
    MANIFEST_NAME,
    RESERVED_NAMES,
    SIGNATURE_NAME,
    FileEntry,
    encode_signature,
    render_manifest,
    valid_version,
)
from swdepot.packages.model import MiB
from swdepot.packages.naming import normalise_member_path

READ_CHUNK = MiB
COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class _Source:
    """A regular file of the source tree and its path inside the package."""

    member: str
    path: Path
    executable: bool


class _HashingReader:
    """Hashes what tarfile copies, to notice a source file changing during the build."""

    def __init__(self, fileobj: io.BufferedReader) -> None:
        self._fileobj = fileobj
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        """Read through, hashing exactly the bytes that end up in the archive."""
        data = self._fileobj.read(size)
        self.digest.update(data)
        return data


def build_package(
    source_dir: Path,
    output: Path,
    *,
    version: str,
    product: str = "ONTAP",
    signing_key: Path | None = None,
    created: datetime | None = None,
) -> Path:
    """Pack ``source_dir`` as a swdepot package at ``output`` and return ``output``.

    The result is deterministic for the same tree and arguments: members sorted, manifest
    first (then its signature), owner 0/0, every mtime and the manifest's "created" set to
    ``created`` (default: the newest source mtime), no name or time in the gzip header.
    Symlinks and special files are refused (ValueError) since the inspector refuses them too.
    """
    if not valid_version(version):
        raise ValueError(f"invalid package version {version!r}")
    if not product or not product.isprintable():
        raise ValueError(f"invalid product name {product!r}")
    sources = _collect(source_dir)
    entries = {source.member: _describe(source.path) for source in sources}
    created = created or _newest_mtime(sources)
    manifest = render_manifest(version=version, product=product, created=created, files=entries)
    signature = None
    if signing_key is not None:
        signature = encode_signature(load_private_key(signing_key).sign(manifest))
    _write_atomically(output, int(created.timestamp()), manifest, signature, sources, entries)
    return output


def _collect(source_dir: Path) -> list[_Source]:
    """Every regular file below ``source_dir``, sorted by member path."""
    if not source_dir.is_dir():
        raise ValueError(f"{source_dir}: not a directory")
    found: list[_Source] = []
    _walk(source_dir, "", found)
    found.sort(key=lambda source: source.member)
    return found


def _walk(directory: Path, prefix: str, found: list[_Source]) -> None:
    """Recursive scan that refuses anything the package format cannot carry."""
    for entry in os.scandir(directory):
        member = prefix + entry.name
        path = Path(entry.path)
        if entry.is_symlink():
            raise ValueError(f"{path}: symbolic links cannot be packaged")
        if normalise_member_path(member) != member or member in RESERVED_NAMES:
            raise ValueError(f"{path}: name cannot be used in a package")
        if entry.is_dir(follow_symlinks=False):
            _walk(path, member + "/", found)
        elif entry.is_file(follow_symlinks=False):
            mode = entry.stat(follow_symlinks=False).st_mode
            found.append(_Source(member, path, bool(mode & stat.S_IXUSR)))
        else:
            raise ValueError(f"{path}: only regular files and directories can be packaged")


def _describe(path: Path) -> FileEntry:
    """Size and SHA-256 of one source file, for the manifest."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fileobj:
        while chunk := fileobj.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(sha256=digest.hexdigest(), size=size)


def _newest_mtime(sources: list[_Source]) -> datetime:
    """A creation time that depends only on the tree, so rebuilding gives the same bytes."""
    newest = max((int(source.path.stat().st_mtime) for source in sources), default=0)
    return datetime.fromtimestamp(newest, tz=UTC)


def _write_atomically(
    output: Path,
    mtime: int,
    manifest: bytes,
    signature: bytes | None,
    sources: list[_Source],
    entries: dict[str, FileEntry],
) -> None:
    """Write to a temporary file next to ``output`` and rename, so no half package is seen."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    try:
        with (
            os.fdopen(handle, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar,
        ):
            tar.addfile(_tarinfo(MANIFEST_NAME, len(manifest), mtime), io.BytesIO(manifest))
            if signature is not None:
                tar.addfile(_tarinfo(SIGNATURE_NAME, len(signature), mtime), io.BytesIO(signature))
            for source in sources:
                _add_source(tar, source, entries[source.member], mtime)
        os.chmod(temp_name, 0o644)  # mkstemp creates 0600; a package is not a secret
        os.replace(temp_name, output)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _add_source(tar: tarfile.TarFile, source: _Source, entry: FileEntry, mtime: int) -> None:
    """Copy one file into the archive and make sure it still matches its manifest entry."""
    mode = 0o755 if source.executable else 0o644
    info = _tarinfo(source.member, entry.size, mtime, mode)
    with source.path.open("rb") as fileobj:
        reader = _HashingReader(fileobj)
        tar.addfile(info, reader)
    if reader.digest.hexdigest() != entry.sha256:
        raise ValueError(f"{source.path}: changed while the package was being built")


def _tarinfo(name: str, size: int, mtime: int, mode: int = 0o644) -> tarfile.TarInfo:
    """A regular-file header with all ownership fields fixed, for reproducible output."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Create an Ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key (SPKI PEM).

    An existing private key file is never overwritten (FileExistsError): losing a signing
    key silently would orphan every trust directory that lists its public half.
    """
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    handle = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as fileobj:
        os.fchmod(fileobj.fileno(), 0o600)  # the umask can only narrow this, but be explicit
        fileobj.write(private_pem)
    public_path.write_bytes(public_pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file; ValueError names a bad file."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key
