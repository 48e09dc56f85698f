"""Package format, naming rules, streaming inspection and the builder (real files, no mocks)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from swdepot.api.http import http_status
from swdepot.errors import PACKAGE_PROCESSING_FAILED, InvalidInput
from swdepot.packages.build import build_package, generate_keypair, load_private_key
from swdepot.packages.inspect import PackageInspector, inspect_file
from swdepot.packages.manifest import (
    FileEntry,
    encode_signature,
    load_trusted_keys,
    render_manifest,
)
from swdepot.packages.model import (
    MiB,
    PackageInfo,
    PackageInvalid,
    PackageKind,
    ValidationPolicy,
)
from swdepot.packages.naming import (
    classify_file_name,
    image_version_from_name,
    is_firmware_name,
    safe_file_name,
)

ONTAP_NAME = "9161_q_image.tgz"
CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
Member = tuple[tarfile.TarInfo, bytes | None]


# --- helpers ------------------------------------------------------------------------------


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> Member:
    """A tar member as (header, contents); contents only for regular files."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def manifest_member(files: dict[str, bytes], version: str = "2.1.0") -> Member:
    """manifest.json describing ``files`` exactly."""
    entries = {
        path: FileEntry(hashlib.sha256(data).hexdigest(), len(data)) for path, data in files.items()
    }
    body = render_manifest(version=version, product="ONTAP", created=CREATED, files=entries)
    return member("manifest.json", body)


def tar_bytes(members: Iterable[Member], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar written by hand, so tests can break any rule of the format."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def tgz(members: Iterable[Member]) -> bytes:
    """A gzip tarball of ``members``."""
    return gzip.compress(tar_bytes(members), mtime=0)


def inspect_bytes(
    tmp_path: Path, data: bytes, name: str, policy: ValidationPolicy | None = None
) -> PackageInfo:
    """Run ``data`` through inspect_file under the download name ``name``."""
    path = tmp_path / "download.bin"
    path.write_bytes(data)
    return inspect_file(path, name, policy or ValidationPolicy())


def rejected(tmp_path: Path, data: bytes, name: str, policy: ValidationPolicy | None = None) -> str:
    """The failure message for a package that must be refused."""
    with pytest.raises(PackageInvalid) as caught:
        inspect_bytes(tmp_path, data, name, policy)
    assert caught.value.code == PACKAGE_PROCESSING_FAILED
    assert caught.value.message.startswith("Failed to process the package: ")
    return caught.value.message


def source_tree(root: Path) -> Path:
    """A small source directory with nested files and one incompressible file."""
    (root / "bin").mkdir(parents=True)
    (root / "README").write_text("ONTAP test image\n")
    (root / "bin" / "kernel").write_bytes(os.urandom(300_000))
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    return root


def keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A signing key and its public half, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.key", directory / f"{name}.pem"
    generate_keypair(private, public)
    return private, public


def inspector_threads(file_name: str) -> list[threading.Thread]:
    """Live inspection threads for ``file_name`` (they are named after it)."""
    wanted = f"package-inspector:{file_name}"
    return [thread for thread in threading.enumerate() if thread.name == wanted]


def chunks(data: bytes, size: int) -> Iterable[bytes]:
    """``data`` cut into pieces of ``size`` bytes."""
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """An unsigned package built from source_tree()."""
    source = source_tree(tmp_path / "src")
    return build_package(source, tmp_path / "pkg.tgz", version="9.16.1", created=CREATED)


# --- naming ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("9161_q_image.tgz", "9.16.1"),
        ("97P5_q_image.tgz", "9.7P5"),
        ("97_q_image.tgz", "9.7"),
        ("96_image.tgz", "9.6"),
        ("991_q_image.tgz", "9.9.1"),
        ("9101P3_q_image.tgz", "9.10.1P3"),
        ("9131_q_fips_image.tgz", "9.13.1"),
        ("9171RC1_q_image.tgz", "9.17.1RC1"),
        ("9141D2_q_image.tgz", "9.14.1D2"),
        ("9121X7_image.tgz", "9.12.1X7"),
        ("9151p2_Q_IMAGE.TGZ", "9.15.1P2"),
        ("9161_q_image.tar.gz", None),
        ("9161_q_image.zip", None),
        ("91611_q_image.tgz", None),
        ("9_q_image.tgz", None),
        ("9161q_image.tgz", None),
        ("9161_q_image.tgz.sig", None),
        ("x9161_q_image.tgz", None),
        ("9161RC_q_image.tgz", None),
        ("image.tgz", None),
    ],
)
def test_image_version_from_name(name: str, version: str | None) -> None:
    assert image_version_from_name(name) == version


@pytest.mark.parametrize(
    "name",
    [
        "X423_HCOBE900A10.LOD",
        "x423_hcobe900a10.lod",
        "IOM6.0210.SFW",
        "ACP-IOM3.0230.AFW",
        "IOM12.0300.zip",
        "all_shelf_fw.zip",
        "DS224C_shelf_firmware.zip",
        "SP_FW.zip",
        "5.11_SP_FW.zip",
        "FAS8200_SP_5.11.zip",
        "BMC_FW_12.5.zip",
        "qual_devices.zip",
        "qual_devices_20240501.tgz",
        "disk_firmware.zip",
    ],
)
def test_firmware_names_are_accepted_without_inspection(tmp_path: Path, name: str) -> None:
    assert is_firmware_name(name)
    info = inspect_bytes(tmp_path, b"opaque firmware bytes, not an archive", name)
    assert info == PackageInfo(PackageKind.FIRMWARE, name, None, None, name, 0)


@pytest.mark.parametrize(
    "name",
    [
        "firmware.bin",
        "display_fw.zip",
        "SP_FW.tar",
        "IOM6.0210.SFW.txt",
        "disk_firmware.zip.part",
        "README",
        ".LOD",
        "9161_q_image.zip",
    ],
)
def test_unrecognised_names_fail_before_any_byte(tmp_path: Path, name: str) -> None:
    assert not is_firmware_name(name)
    inspector = PackageInspector(name, ValidationPolicy())
    error = inspector.failed()
    assert error is not None
    assert "not a recognised software image or firmware file name" in error.message
    assert rejected(tmp_path, b"whatever", name) == error.message


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("pkg.tgz", True),
        ("é" * 127, True),
        ("é" * 128, False),
        ("a" * 255, True),
        ("a" * 256, False),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a\\b", False),
        ("a\0b", False),
        ("a\nb", False),
        ("a\x7fb", False),
        ("a\x85b", False),
        ("\udcff.tgz", False),
    ],
)
def test_safe_file_name(name: str, safe: bool) -> None:
    assert safe_file_name(name) is safe


@pytest.mark.parametrize("name", ["../x.tgz", "a/b.tgz", "x\n.tgz"])
def test_unsafe_download_names_are_refused(name: str) -> None:
    with pytest.raises(PackageInvalid, match="unsafe file name"):
        classify_file_name(name)


def test_package_invalid_is_an_invalid_input_with_the_ontap_code() -> None:
    error = PackageInvalid.because("x")
    assert isinstance(error, InvalidInput)
    assert (error.code, http_status(error), error.message) == (
        10551359,
        400,
        "Failed to process the package: x",
    )


# --- round trips ----------------------------------------------------------------------------


def test_unsigned_round_trip(tmp_path: Path, package: Path) -> None:
    info = inspect_file(package, "any-safe-name.tar.gz", ValidationPolicy())
    assert info == PackageInfo(
        PackageKind.IMAGE, "9.16.1", "ONTAP", None, "any-safe-name.tar.gz", 3
    )


def test_signed_round_trip_names_the_trusted_signer(tmp_path: Path) -> None:
    private, public = keypair(tmp_path / "keys", "release")
    trust = tmp_path / "trust"
    trust.mkdir()
    public.rename(trust / "netapp-release.pem")
    keypair(tmp_path / "keys", "other")[1].rename(trust / "another.pem")
    source = source_tree(tmp_path / "src")
    package = build_package(
        source, tmp_path / "p.tgz", version="9.16.1P2", product="ONTAP", signing_key=private
    )
    policy = ValidationPolicy(require_signatures=True, trusted_keys=load_trusted_keys(trust))
    info = inspect_file(package, "p.tgz", policy)
    assert (info.signer, info.version, info.files) == ("netapp-release", "9.16.1P2", 3)


def test_build_is_deterministic_and_manifest_comes_first(tmp_path: Path) -> None:
    private, _ = keypair(tmp_path / "keys", "k")
    source = source_tree(tmp_path / "src")
    first = build_package(source, tmp_path / "a.tgz", version="1.0", signing_key=private)
    second = build_package(source, tmp_path / "b.tgz", version="1.0", signing_key=private)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
        modes = {m.name: m.mode for m in tar.getmembers()}
        owners = {(m.uid, m.gid, m.mtime) for m in tar.getmembers()}
    assert names == ["manifest.json", "manifest.json.sig", "README", "bin/kernel", "bin/tool"]
    assert modes["bin/tool"] == 0o755 and modes["README"] == 0o644
    newest = max(int(p.stat().st_mtime) for p in source.rglob("*") if p.is_file())
    assert owners == {(0, 0, newest)}


def test_build_creates_the_output_directory(tmp_path: Path) -> None:
    source = source_tree(tmp_path / "src")
    out = build_package(source, tmp_path / "new" / "dir" / "p.tgz", version="1.0")
    assert out.is_file() and inspect_file(out, "p.tgz", ValidationPolicy()).version == "1.0"


def test_build_refuses_symlinks_and_reserved_names(tmp_path: Path) -> None:
    source = source_tree(tmp_path / "src")
    (source / "link").symlink_to(source / "README")
    with pytest.raises(ValueError, match="symbolic links"):
        build_package(source, tmp_path / "x.tgz", version="1.0")
    (source / "link").unlink()
    (source / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot be used"):
        build_package(source, tmp_path / "x.tgz", version="1.0")
    assert not (tmp_path / "x.tgz").exists()


def test_generate_keypair_is_private_and_never_overwrites(tmp_path: Path) -> None:
    private, public = keypair(tmp_path, "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = load_private_key(private)
    assert load_trusted_keys(tmp_path)["k"].public_bytes(
        Encoding.Raw, PublicFormat.Raw
    ) == key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(FileExistsError):
        generate_keypair(private, public)


def test_load_trusted_keys(tmp_path: Path) -> None:
    assert load_trusted_keys(tmp_path / "missing") == {}
    keypair(tmp_path / "trust", "good")
    (tmp_path / "trust" / "README").write_text("not a key, ignored")
    assert set(load_trusted_keys(tmp_path / "trust")) == {"good"}
    (tmp_path / "trust" / "good.pem").rename(tmp_path / "trust" / "renamed.pub")
    assert set(load_trusted_keys(tmp_path / "trust")) == {"renamed"}
    keypair(tmp_path / "trust", "renamed")  # renamed.pem next to renamed.pub
    with pytest.raises(ValueError, match="already defines"):
        load_trusted_keys(tmp_path / "trust")
    (tmp_path / "trust" / "renamed.pem").unlink()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    bad = tmp_path / "trust" / "rsa.pem"
    bad.write_bytes(rsa_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ValueError, match=r"rsa\.pem"):
        load_trusted_keys(tmp_path / "trust")
    bad.write_text("garbage")
    with pytest.raises(ValueError, match=r"rsa\.pem"):
        load_trusted_keys(tmp_path / "trust")


# --- signatures -----------------------------------------------------------------------------


def test_require_signatures_rejects_unsigned_package(tmp_path: Path, package: Path) -> None:
    message = rejected(tmp_path, package.read_bytes(), "p.tgz", ValidationPolicy(True))
    assert "signature is required" in message


def test_signature_by_untrusted_key_is_rejected(tmp_path: Path) -> None:
    private, _ = keypair(tmp_path / "keys", "rogue")
    keypair(tmp_path / "trust", "netapp")
    source = source_tree(tmp_path / "src")
    package = build_package(source, tmp_path / "p.tgz", version="1.0", signing_key=private)
    policy = ValidationPolicy(trusted_keys=load_trusted_keys(tmp_path / "trust"))
    message = rejected(tmp_path, package.read_bytes(), "p.tgz", policy)
    assert "signature does not match any trusted key" in message
    # Even when signatures are optional, a signature that cannot be verified is refused.
    assert "does not match" in rejected(tmp_path, package.read_bytes(), "p.tgz")


def test_signature_over_other_bytes_is_rejected(tmp_path: Path) -> None:
    private, _ = keypair(tmp_path / "keys", "k")
    files = {"a": b"payload"}
    manifest = manifest_member(files)
    wrong = encode_signature(load_private_key(private).sign(b"something else"))
    data = tgz([manifest, member("manifest.json.sig", wrong), member("a", b"payload")])
    policy = ValidationPolicy(trusted_keys=load_trusted_keys(tmp_path / "keys"))
    assert "does not match any trusted key" in rejected(tmp_path, data, "p.tgz", policy)
    right = encode_signature(load_private_key(private).sign(manifest[1] or b""))
    data = tgz([manifest, member("manifest.json.sig", right), member("a", b"payload")])
    assert inspect_bytes(tmp_path, data, "p.tgz", policy).signer == "k"


def test_signature_without_manifest_is_rejected(tmp_path: Path) -> None:
    data = tgz([member("manifest.json.sig", b"AAAA"), member("a", b"x")])
    message = rejected(tmp_path, data, ONTAP_NAME)
    assert "manifest.json.sig" in message


# --- manifest matching ----------------------------------------------------------------------


@pytest.mark.parametrize("manifest_last", [False, True])
def test_tampered_member_is_a_hash_mismatch(tmp_path: Path, manifest_last: bool) -> None:
    manifest = manifest_member({"bin/payload": b"original"})
    payload = member("bin/payload", b"tampered")  # same size, other content
    data = tgz([payload, manifest] if manifest_last else [manifest, payload])
    message = rejected(tmp_path, data, "p.tgz")
    if manifest_last:  # the manifest must precede the files it lists
        assert '"manifest.json" must come before the files of the archive' in message
    else:
        assert 'hash mismatch of member "bin/payload"' in message


def test_size_mismatch(tmp_path: Path) -> None:
    data = tgz([manifest_member({"a": b"short"}), member("a", b"longer")])
    assert 'size mismatch of member "a"' in rejected(tmp_path, data, "p.tgz")


def test_missing_listed_file(tmp_path: Path) -> None:
    data = tgz([manifest_member({"a": b"1", "b": b"2"}), member("a", b"1")])
    assert 'file "b" listed in manifest.json is missing' in rejected(tmp_path, data, "p.tgz")


def test_unlisted_extra_file(tmp_path: Path) -> None:
    data = tgz([manifest_member({"a": b"1"}), member("a", b"1"), member("extra", b"2")])
    assert 'file "extra" is not listed in manifest.json' in rejected(tmp_path, data, "p.tgz")


def test_manifest_with_directories_and_dot_slash_prefix_is_accepted(tmp_path: Path) -> None:
    files = {"d/a": b"1"}
    manifest = manifest_member(files)[1] or b""
    data = tgz(
        [
            member(".", kind=tarfile.DIRTYPE),
            member("./d", kind=tarfile.DIRTYPE),
            member("./manifest.json", manifest),
            member("./d/a", b"1"),
        ]
    )
    assert inspect_bytes(tmp_path, data, "p.tgz").files == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "invalid JSON"),
        (b'{"format": 1, "version": "1", "version": "2", "files": {}}', "duplicate key"),
        (b'{"format": 2, "version": "1", "files": {}}', '"format"'),
        (b'{"format": 1, "version": "../1", "files": {}}', '"version"'),
        (b'{"format": 1, "version": "1", "files": {"../a": {}}}', "invalid file path"),
        (b'{"format": 1, "version": "1", "files": {"a": {"sha256": "AB", "size": 1}}}', "sha256"),
        (b'{"format": 1, "version": "1", "created": "yesterday", "files": {}}', '"created"'),
    ],
)
def test_malformed_manifest(tmp_path: Path, body: bytes, problem: str) -> None:
    message = rejected(tmp_path, tgz([member("manifest.json", body)]), "p.tgz")
    assert "malformed manifest.json" in message and problem in message


def test_oversized_manifest(tmp_path: Path) -> None:
    data = tgz([manifest_member({"a": b"1"}), member("a", b"1")])
    policy = ValidationPolicy(max_manifest_bytes=64)
    assert '"manifest.json" is too large' in rejected(tmp_path, data, "p.tgz", policy)
    assert inspect_bytes(tmp_path, data, "p.tgz").files == 1


# --- member safety ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (member("../evil", b"x"), 'unsafe member path "../evil"'),
        (member("a/../../evil", b"x"), "unsafe member path"),
        (member("/etc/passwd", b"x"), 'unsafe member path "/etc/passwd"'),
        (member("a\\b", b"x"), "unsafe member path"),
        (member("a//b", b"x"), "unsafe member path"),
        (member("a\x1bb", b"x"), "unsafe member path"),
        (member("link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "symbolic link member"),
        (member("hard", kind=tarfile.LNKTYPE, link="ok"), "hard link member"),
        (member("null", kind=tarfile.CHRTYPE), "device member"),
        (member("disk", kind=tarfile.BLKTYPE), "device member"),
        (member("pipe", kind=tarfile.FIFOTYPE), "fifo member"),
        (member("ok", b"again"), 'duplicate member "ok"'),
        (member("ok/inner", b"x"), "is inside regular file"),
    ],
)
def test_unsafe_members_are_rejected(tmp_path: Path, bad: Member, problem: str) -> None:
    good = [member("ok", b"fine"), member("dir", kind=tarfile.DIRTYPE)]
    assert inspect_bytes(tmp_path, tgz(good), ONTAP_NAME).files == 1  # the control passes
    assert problem in rejected(tmp_path, tgz([*good, bad]), ONTAP_NAME)


def test_file_over_directory_is_rejected(tmp_path: Path) -> None:
    data = tgz([member("d/a", b"1"), member("d", b"file now")])
    assert 'regular file "d" is also a directory' in rejected(tmp_path, data, ONTAP_NAME)


def test_too_many_members(tmp_path: Path) -> None:
    data = tgz([member(f"f{i}", b"x") for i in range(5)])
    policy = ValidationPolicy(max_members=4)
    assert "too many members" in rejected(tmp_path, data, ONTAP_NAME, policy)
    assert inspect_bytes(tmp_path, data, ONTAP_NAME, ValidationPolicy(max_members=5)).files == 5


# --- limits and corrupt data ----------------------------------------------------------------


def test_declared_size_beyond_unpacked_limit(tmp_path: Path) -> None:
    data = tgz([member("zeros", bytes(8 * MiB))])
    assert len(data) < 64 * 1024
    policy = ValidationPolicy(max_unpacked_bytes=1 * MiB)
    assert "too large when unpacked" in rejected(tmp_path, data, ONTAP_NAME, policy)


def test_zero_padding_bomb_after_the_archive_is_caught_by_the_stream(tmp_path: Path) -> None:
    data = gzip.compress(tar_bytes([member("a", b"1")]) + bytes(32 * MiB), mtime=0)
    policy = ValidationPolicy(max_unpacked_bytes=4 * MiB, max_ratio=1e9)
    assert "too large when unpacked" in rejected(tmp_path, data, ONTAP_NAME, policy)


def test_compression_ratio_limit(tmp_path: Path) -> None:
    data = tgz([member("zeros", bytes(4 * MiB))])
    policy = ValidationPolicy(max_ratio=50, ratio_check_after_bytes=1 * MiB)
    assert "compression ratio" in rejected(tmp_path, data, ONTAP_NAME, policy)
    assert inspect_bytes(tmp_path, data, ONTAP_NAME).files == 1  # default: 64 MiB threshold


def test_truncated_archive(tmp_path: Path, package: Path) -> None:
    data = package.read_bytes()
    assert "truncated" in rejected(tmp_path, data[: len(data) // 2], ONTAP_NAME)


def test_tar_without_end_marker(tmp_path: Path) -> None:
    body = tar_bytes([member("a", bytes(512))], fmt=tarfile.USTAR_FORMAT)
    data = gzip.compress(body[:1024])  # header + data, no zero blocks
    assert "no end-of-archive marker" in rejected(tmp_path, data, ONTAP_NAME)


def test_garbage_after_the_tar_end(tmp_path: Path) -> None:
    data = gzip.compress(tar_bytes([member("a", b"1")]) + b"garbage")
    assert "malformed tar archive" in rejected(tmp_path, data, ONTAP_NAME)


def test_garbage_after_the_gzip_stream(tmp_path: Path) -> None:
    data = tgz([member("a", b"1")]) + b"garbage"
    assert "unexpected data after the gzip stream" in rejected(tmp_path, data, ONTAP_NAME)


def test_corrupt_gzip_checksum(tmp_path: Path) -> None:
    data = bytearray(tgz([member("a", b"1")]))
    data[-8] ^= 0xFF  # first byte of the CRC32 trailer
    assert "corrupt gzip data" in rejected(tmp_path, bytes(data), ONTAP_NAME)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"PK\x03\x04 this is a zip, not a tarball", "not a gzip tarball"),
        (b"", "the file is empty"),
        (gzip.compress(b"plain text, no tar inside" * 40), "malformed tar archive"),
    ],
)
def test_not_a_gzip_tarball(tmp_path: Path, data: bytes, problem: str) -> None:
    assert problem in rejected(tmp_path, data, ONTAP_NAME)


def test_empty_firmware_is_rejected(tmp_path: Path) -> None:
    assert "empty" in rejected(tmp_path, b"", "SP_FW.zip")


# --- ONTAP images without a manifest --------------------------------------------------------


def test_ontap_named_image_without_manifest(tmp_path: Path) -> None:
    data = tgz([member("kernel", os.urandom(1000)), member("boot/loader", b"x")])
    info = inspect_bytes(tmp_path, data, "9101P3_q_image.tgz")
    assert info == PackageInfo(
        PackageKind.IMAGE, "9.10.1P3", "ONTAP", None, "9101P3_q_image.tgz", 2
    )
    assert "missing manifest.json" in rejected(tmp_path, data, "custom.tgz")
    message = rejected(tmp_path, data, "9101P3_q_image.tgz", ValidationPolicy(True))
    assert "signature is required" in message


def test_manifest_version_wins_over_the_name(tmp_path: Path) -> None:
    data = tgz([manifest_member({"a": b"1"}, version="9.16.1P1"), member("a", b"1")])
    assert inspect_bytes(tmp_path, data, ONTAP_NAME).version == "9.16.1P1"


# --- streaming behaviour --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, MiB])
def test_feed_in_odd_chunk_sizes(tmp_path: Path, size: int) -> None:
    files = {"small": b"abc", "random": os.urandom(24_000 if size < 8 else 3 * MiB)}
    data = tgz([manifest_member(files), *(member(n, d) for n, d in files.items())])
    inspector = PackageInspector("chunked.tgz", ValidationPolicy())
    for piece in chunks(data, size):
        inspector.feed(piece)
    assert inspector.finish().files == 2
    assert inspector.received == len(data)


def test_abort_mid_stream_returns_promptly_and_ends_the_thread(package: Path) -> None:
    name = "abort-me.tgz"
    inspector = PackageInspector(name, ValidationPolicy())
    data = package.read_bytes()
    inspector.feed(data[: len(data) // 3])
    assert inspector_threads(name)
    started = time.monotonic()
    inspector.abort()
    assert time.monotonic() - started < 2
    assert not inspector_threads(name)
    inspector.abort()  # idempotent
    inspector.feed(b"late chunk")  # a late feed after abort is harmless
    assert inspector.failed() is None
    with pytest.raises(PackageInvalid, match="aborted"):
        inspector.finish()


def test_leaving_the_context_without_finish_aborts(package: Path) -> None:
    name = "context.tgz"
    with PackageInspector(name, ValidationPolicy()) as inspector:
        inspector.feed(package.read_bytes()[:1000])
    assert not inspector_threads(name)


def test_early_failure_lets_the_rest_drain_quickly(tmp_path: Path) -> None:
    data = tgz([member("../evil", b"x"), member("bulk", os.urandom(12 * MiB))])
    pieces = list(chunks(data, 256 * 1024))
    inspector = PackageInspector("early.tgz", ValidationPolicy())
    # The producer outruns the inspector, so it is blocked on the full queue when the
    # inspector fails; it must be released and every later feed must return at once.
    feeder = threading.Thread(target=lambda: [inspector.feed(p) for p in pieces], daemon=True)
    feeder.start()
    feeder.join(5)
    assert not feeder.is_alive()
    error = inspector.failed()
    assert error is not None and "unsafe member path" in error.message
    assert not inspector_threads("early.tgz")
    started = time.monotonic()
    for piece in pieces:
        inspector.feed(piece)
    assert time.monotonic() - started < 0.5
    assert inspector.received == 2 * len(data)
    with pytest.raises(PackageInvalid) as caught:
        inspector.finish()
    assert caught.value is error


def test_oversized_extended_header_is_refused(tmp_path: Path) -> None:
    info, data = member("a", b"1")
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    message = rejected(tmp_path, tgz([(info, data)]), ONTAP_NAME)
    assert "extended tar header" in message


def test_finish_is_idempotent(package: Path) -> None:
    inspector = PackageInspector("twice.tgz", ValidationPolicy())
    inspector.feed(package.read_bytes())
    assert inspector.finish() == inspector.finish()
    with pytest.raises(RuntimeError):
        inspector.feed(b"more")
