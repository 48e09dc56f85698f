"""File-name rules: ONTAP image names, firmware names and names that are safe to store.

ONTAP does not publish the patterns it uses to recognise firmware files; the ones here are
swdepot's decision and are documented in docs/package-format.md.
"""

from __future__ import annotations

import json
import re
import unicodedata

from swdepot.packages.model import PackageInvalid, PackageKind

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096

# 9161_q_image.tgz, 97P5_q_image.tgz, 96_image.tgz, 9131_q_fips_image.tgz, 9171RC1_q_image.tgz
_IMAGE_NAME = re.compile(
    r"(?P<major>[1-9])(?P<rest>\d{1,3})(?P<patch>(?:P|D|RC|X)\d+)?_(?:[a-z0-9]+_)*image\.tgz",
    re.IGNORECASE,
)

_FIRMWARE_NAMES = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r".+\.lod",  # disk firmware
        r".+\.(?:sfw|afw)",  # shelf (SFW) and ACP (AFW) firmware
        r"iom.*\.zip",  # shelf IOM firmware archives
        r".*shelf.*\.zip",  # shelf firmware bundles, e.g. all_shelf_fw.zip
        r".*(?<![a-z])sp.*fw(?![a-z]).*\.zip",  # SP firmware, e.g. SP_FW.zip, 5.11_SP_FW.zip
        r".*_sp_.*\.zip",  # SP firmware, e.g. AFF_SP_5.11.zip
        r".*bmc.*\.zip",  # BMC firmware
        r"qual_devices.*\.(?:zip|tgz)",  # Disk Qualification Package
        r"disk_firmware\.zip",  # disk firmware bundle
        r"all_shelf_fw\.zip",  # shelf firmware bundle
    )
)

_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz")


def image_version_from_name(name: str) -> str | None:
    """The ONTAP version an image file name encodes, or None if it is not an ONTAP image name.

    The digits after the major version are ambiguous without a rule: one digit is the minor
    version, two are minor and micro, three are a two-digit minor and the micro (9161 -> 9.16.1).
    """
    match = _IMAGE_NAME.fullmatch(name)
    if match is None:
        return None
    rest = match["rest"]
    if len(rest) == 1:
        numbers = [rest]
    elif len(rest) == 2:
        numbers = [rest[0], rest[1]]
    else:
        numbers = [str(int(rest[:2])), rest[2]]
    version = ".".join([match["major"], *numbers])
    return version + (match["patch"] or "").upper()


def is_firmware_name(name: str) -> bool:
    """Whether the name is one of the firmware patterns, which are accepted without inspection."""
    return any(pattern.fullmatch(name) for pattern in _FIRMWARE_NAMES)


def is_archive_name(name: str) -> bool:
    """Whether the name ends like a gzip tarball, the only container a manifest package can use."""
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def safe_file_name(name: str) -> bool:
    """Whether the name is a plain basename that is safe to use as a file in the repository."""
    if name in ("", ".", ".."):
        return False
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable tar headers
        return False
    if len(encoded) > MAX_NAME_BYTES:
        return False
    if any(c in "/\\\0" for c in name):
        return False
    return not any(unicodedata.category(c) == "Cc" for c in name)


def normalise_member_path(name: str) -> str | None:
    """The canonical form of an archive member path, or None if the path is unsafe.

    A single leading "./" is dropped because ``tar -C dir -czf out.tgz .`` writes it; apart
    from that the path must already be normalised: relative, "/"-separated, every component a
    safe file name (so no "", "." or ".." components, no backslashes, no control characters).
    The member "." itself (the archive root) is returned as ".".
    """
    if name == ".":
        return name
    if name.startswith("./"):
        name = name[2:]
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return None
    if all(safe_file_name(part) for part in name.split("/")):
        return name
    return None


def quoted(name: str) -> str:
    """A name for error messages: double-quoted, with control characters escaped."""
    return json.dumps(name, ensure_ascii=False)


def classify_file_name(file_name: str) -> PackageKind:
    """What a download of this name must be, so a bad name is refused before any transfer.

    Firmware names win (firmware is never inspected); other names must end .tgz/.tar.gz and
    are inspected as images. Raises PackageInvalid for unsafe or unrecognised names.
    """
    if not safe_file_name(file_name):
        raise PackageInvalid.because(f"unsafe file name {quoted(file_name)}")
    if is_firmware_name(file_name):
        return PackageKind.FIRMWARE
    if is_archive_name(file_name):
        return PackageKind.IMAGE
    raise PackageInvalid.because(
        f"{quoted(file_name)} is not a recognised software image or firmware file name"
    )
