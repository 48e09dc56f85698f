"""Helpers that make real package files for the end-to-end tests."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

from swdepot.packages.build import build_package


def make_package(directory: Path, file_name: str, version: str, *, size: int = 64 * 1024,
                 signing_key: Path | None = None, seed: int | None = None) -> Path:
    """A valid swdepot package (manifest + one payload file) at ``directory/file_name``;
    its payload is the same for the same version, unless another ``seed`` is given."""
    source = directory.parent / f"src-{file_name}"
    (source / "bin").mkdir(parents=True, exist_ok=True)
    # incompressible, so the package is about ``size`` bytes on the wire
    payload = random.Random(version if seed is None else seed).randbytes(size)
    (source / "bin" / "payload.bin").write_bytes(payload)
    (source / "README").write_text(f"package {version}\n")
    return build_package(source, directory / file_name, version=version, signing_key=signing_key)


def make_plain_tgz(path: Path, members: dict[str, bytes]) -> Path:
    """A gzip tarball without a manifest (what real ONTAP images look like)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_traversal_tgz(path: Path) -> Path:
    """An ONTAP-named image whose member tries to escape: ``../../etc/evil``."""
    return make_plain_tgz(path, {"../../etc/evil": b"owned"})
